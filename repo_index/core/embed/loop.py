"""The embedding loop: reuse what is cached, pack the rest into requests, keep at most
`max_concurrent` in flight, retry what fails transiently, write results back in order.

- Requests are packed to the provider's limits: inputs per request (and `batch_size`),
  tokens per request; an input over the per-input limit is refused before any request.
- 429s, 5xx, timeouts and dropped connections are retried with exponential backoff and
  full jitter, or after the wait the server asked for (`retry-after-ms`, `Retry-After`,
  `x-ratelimit-reset-*`): see `retries`. A request whose inputs the server refuses (too
  large, context length, invalid input) is split in two; an input refused alone is skipped
  and counted (`refused`), and the call fails only past `max_refused_share` of the chunks.
- Concurrency is AIMD (as TCP, `limits.AdaptiveLimit`): two rounds of requests in a row in
  which 429s outnumber successes halve the number allowed in flight; every other round
  adds one back, up to `max_concurrent`. Sporadic 429s cost a retry, not the throughput.
- Optional requests- and tokens-per-minute budgets are shared by every request of the
  process, or of every worker with REPO_INDEX_CACHE_URL set (`limits.shared_rate_limiter`).
- Responses with the wrong number of vectors or the wrong dimensions are errors.
- Vectors are reused by (model, dimensions, sha256 of the embedded text with the model's
  document prefix), and every response is written to the cache as it arrives, so a crash
  loses nothing paid for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from ..chunk.records import embedding_text
from .providers import Embedder
from .cache.keys import text_key
from .cache.vectors import CacheStore
from .cache.writer import BackgroundWriter
from .limits import AdaptiveLimit, Budget, shared_rate_limiter
from .refused import RefusedChunks
from ..settings import DEFAULT_MAX_REFUSED_SHARE
from .results import EmbeddingFailed, EmbedResult, EmbedStats, mask_secrets
from .retries import (
    DEFAULT_MAX_RETRIES, REFUSED_INPUTS, RETRYABLE, backoff_seconds, classify_error, retry_after_seconds, server_reason,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[EmbedStats], None]


# -- packing -------------------------------------------------------------------------------


def pack_requests(token_counts: list[int], max_inputs: int, max_tokens: int) -> list[list[int]]:
    """Consecutive index groups with at most `max_inputs` inputs and `max_tokens` tokens."""
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i, n in enumerate(token_counts):
        if current and (len(current) >= max_inputs or tokens + n > max_tokens):
            batches.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += n
    if current:
        batches.append(current)
    return batches


# -- the loop ------------------------------------------------------------------------------


async def _embed_all(
    texts: list[str],
    token_counts: list[int],
    embedder: Embedder,
    on_vectors: Callable[[list[int], np.ndarray], None],
    on_refused: Callable[[int, str], None],
    stats: EmbedStats,
    max_concurrent: int,
    batch_size: int,
    max_retries: int,
    progress: ProgressFn | None,
    rate: Budget | None,
) -> None:
    limit = AdaptiveLimit(max_concurrent)
    max_inputs = min(batch_size, embedder.max_inputs_per_request)

    failed = False  # set before a fatal error is raised, so queued requests are not sent

    async def send(indexes: list[int], tokens: int) -> tuple[np.ndarray | None, Exception | None, int]:
        """One request through a slot: (vectors, None, epoch) or (None, error, epoch)."""
        nonlocal failed
        epoch = await limit.acquire()
        if failed:
            limit.release()
            raise asyncio.CancelledError
        if rate is not None:
            # Inside the slot: when the budget binds, it is the bottleneck, not the slots. In a
            # thread: the shared budget is a database round trip. Its failure (the shared store
            # unreachable) ends the run with its own message: no request goes out without it.
            try:
                await asyncio.sleep(await asyncio.to_thread(rate.reserve, tokens))
            except asyncio.CancelledError:
                limit.release()
                raise
            except Exception:
                failed = True
                limit.release()
                raise
        try:
            stats.requests += 1
            return await embedder.embed([texts[i] for i in indexes], "document"), None, epoch
        except Exception as exc:  # classified by the caller; the rest re-raised as EmbeddingFailed
            return None, exc, epoch
        finally:
            limit.release()

    async def run(indexes: list[int]) -> None:
        nonlocal failed
        tokens = sum(token_counts[i] for i in indexes)
        attempt = 0
        while True:
            matrix, error, epoch = await send(indexes, tokens)
            if error is None:
                limit.record(False, epoch)
                on_vectors(indexes, matrix)
                stats.embedded += len(indexes)
                stats.tokens += tokens
                if progress:
                    progress(stats)
                return
            kind = classify_error(error)
            stats.errors[kind] = stats.errors.get(kind, 0) + 1
            if kind in REFUSED_INPUTS and len(indexes) > 1:  # which input? halve until it is alone
                stats.splits += 1
                half = len(indexes) // 2
                await asyncio.gather(run(indexes[:half]), run(indexes[half:]))
                return
            if kind in REFUSED_INPUTS:  # this input is refused, whoever asks: skip it, counted
                try:
                    on_refused(indexes[0], mask_secrets(server_reason(error), getattr(embedder, "api_key", None)))
                except EmbeddingFailed:
                    failed = True  # too many refused: no queued request is sent
                    raise
                return
            if kind not in RETRYABLE or attempt >= max_retries:
                failed = True  # no await before the raise: no queued request slips out
                # Masked and not chained: a server (or proxy) may echo the API key in its answer,
                # and the original exception would carry it into logs and run storage.
                raise EmbeddingFailed(mask_secrets(
                    f"embedding request of {len(indexes)} inputs failed after {attempt} retries: "
                    f"{type(error).__name__}: {error}", getattr(embedder, "api_key", None))) from None
            if kind == "rate_limit":
                stats.rate_limited += 1
                limit.record(True, epoch)
            attempt += 1
            stats.retries += 1
            await asyncio.sleep(backoff_seconds(attempt, retry_after_seconds(error)))

    batches = pack_requests(token_counts, max_inputs, embedder.max_tokens_per_request)
    log.info("embedding %d texts with %s in %d requests, at most %d in flight", len(texts), embedder.model,
             len(batches), max_concurrent)
    started = time.perf_counter()
    try:
        tasks = [asyncio.create_task(run(b)) for b in batches]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    finally:
        stats.embed_seconds = time.perf_counter() - started
        stats.peak_in_flight, stats.lowest_concurrency = limit.peak, limit.lowest
        await embedder.aclose()


def _check_input_sizes(chunk_ids: Sequence[str], token_counts: list[int], embedder: Embedder) -> None:
    cap = embedder.max_tokens_per_input
    over = [(cid, n) for cid, n in zip(chunk_ids, token_counts) if n > cap]
    if over:
        examples = ", ".join(f"{cid} ({n} tokens)" for cid, n in over[:3])
        raise EmbeddingFailed(
            f"{len(over)} chunks exceed the {cap} tokens {embedder.model} reads per input, e.g. {examples}: "
            "chunk again with a smaller max_tokens")


def _embedding_texts(chunks: pd.DataFrame, rows: Iterable[int] | None = None) -> Iterator[str]:
    """The texts sent to the embedder, of `rows` (default all), one at a time: a repository's
    texts are not all held at once (only those still to embed are)."""
    columns = chunks["path"].tolist(), chunks["header"].tolist(), chunks["text"].tolist()
    triples = zip(*columns) if rows is None else (tuple(c[r] for c in columns) for r in rows)
    return (embedding_text(p, s, t) for p, s, t in triples)


def _dedupe(keys: list[bytes]) -> tuple[list[bytes], list[int], np.ndarray]:
    """Distinct keys in first-seen order, the row where each is first seen, and for every
    row the index of its key among the distinct ones."""
    position: dict[bytes, int] = {}
    first_rows: list[int] = []
    row_to_unique = []
    for row, key in enumerate(keys):
        u = position.setdefault(key, len(first_rows))
        if u == len(first_rows):
            first_rows.append(row)
        row_to_unique.append(u)
    return list(position), first_rows, np.asarray(row_to_unique, dtype=np.int64)


async def embed_chunks_async(
    chunks: pd.DataFrame,
    embedder: Embedder,
    cache: CacheStore | None = None,
    max_concurrent: int = 10,
    batch_size: int = 100,
    max_retries: int = DEFAULT_MAX_RETRIES,
    estimate_only: bool = False,
    owner: str | None = None,
    progress: ProgressFn | None = None,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    keep_vectors: bool = True,
    max_refused_share: float = DEFAULT_MAX_REFUSED_SHARE,
) -> EmbedResult:
    """Vectors for every chunk (rows in `chunks` order), embedding only texts not cached.

    A text the server refuses on its own (a 400 about the input: context length, invalid
    input; found by halving the request) gets no vector and is not cached, so the next run
    asks again; its chunks are listed in the result's `refused`. More than
    `max_refused_share` of the chunks refused fails the call (EmbeddingFailed), at once.

    With `owner` (the repository) the cache keeps every vector this call needs referenced
    from the start (a crash loses none), then references exactly the current ones and
    prunes those no repository uses any more.

    `keep_vectors=False` (needs a cache and an owner, whose references keep the vectors
    there for whoever reads them next) builds no matrix: cached texts are only looked up
    by key, new vectors go only to the cache, and the result's `vectors` is None: memory
    does not grow with chunks x dimensions.
    """
    if not keep_vectors and (cache is None or not owner):
        raise ValueError("keep_vectors=False needs a cache and an owner: the vectors are left in the cache")
    started = time.perf_counter()
    model, dims = embedder.model, embedder.dimensions
    # The key covers what the model reads: a vector made with another document prefix is
    # another vector (with none, the key is the text's own hash, as it always was).
    keys = [text_key(embedder.info.prefixed("document", t)) for t in _embedding_texts(chunks)]
    unique, first_rows, row_to_unique = _dedupe(keys)
    stats = EmbedStats(chunks=len(keys), unique_texts=len(unique), lowest_concurrency=max_concurrent)
    if cache is not None and owner and not estimate_only:
        cache.reserve(owner, model, dims, unique)  # before reading: see cache/refs.py
    vectors: np.ndarray | None = None
    if keep_vectors:
        cached = cache.get_many(model, dims, unique) if cache is not None else {}
        # One row per distinct text; rows of chunks sharing a text are copied from it at the end.
        vectors = np.empty((len(unique), dims), dtype=np.float32)
        for u, key in enumerate(unique):
            if key in cached:
                vectors[u] = cached[key]
    else:
        cached = cache.present(model, dims, unique)
    stats.reused = len(cached)
    missing = [u for u, key in enumerate(unique) if key not in cached]  # indexes into `unique`
    stats.to_embed = len(missing)
    miss_rows = [first_rows[u] for u in missing]
    n_tokens, chunk_ids = chunks["n_tokens"].tolist(), chunks["chunk_id"].tolist()
    miss_tokens = [int(n_tokens[r]) for r in miss_rows]
    _check_input_sizes([chunk_ids[r] for r in miss_rows], miss_tokens, embedder)
    stats.estimated_usd = sum(miss_tokens) / 1e6 * embedder.info.usd_per_million_tokens
    if progress:
        progress(stats)  # the plan: reused vs to embed, before any request

    if estimate_only:
        stats.tokens = sum(miss_tokens)
        stats.seconds = time.perf_counter() - started
        return EmbedResult(chunk_ids, np.zeros((0, dims), np.float32), model, dims, stats, keys)
    refused = RefusedChunks(chunks, row_to_unique, max_refused_share, stats)
    if missing:
        await _embed_missing(list(_embedding_texts(chunks, miss_rows)), miss_tokens, [unique[u] for u in missing],
                             np.asarray(missing), vectors, embedder, cache, stats, max_concurrent, batch_size,
                             max_retries, progress, requests_per_minute, tokens_per_minute,
                             lambda i, reason: refused.add(int(missing[i]), reason))
    if refused.texts and vectors is not None:
        vectors[sorted(refused.texts)] = 0.0  # no vector: rows the caller must skip (result.refused)
    if cache is not None and owner:
        # A refused text has no vector to keep: referencing it would only keep its key around.
        stats.pruned = cache.set_refs(owner, model, dims, [k for u, k in enumerate(unique) if u not in refused.texts])
    stats.seconds = time.perf_counter() - started
    if vectors is not None and len(unique) < len(keys):
        vectors = vectors[row_to_unique]
    return EmbedResult(chunk_ids, vectors, model, dims, stats, keys, refused.records())


async def _embed_missing(texts: list[str], token_counts: list[int], keys: list[bytes], slots: np.ndarray,
                         vectors: np.ndarray | None, embedder: Embedder, cache: CacheStore | None,
                         stats: EmbedStats, max_concurrent: int, batch_size: int, max_retries: int,
                         progress: ProgressFn | None, requests_per_minute: float | None,
                         tokens_per_minute: float | None, on_refused: Callable[[int, str], None]) -> None:
    """Embed `texts`; the vector of texts[i] goes to the cache and to vectors[slots[i]] unless
    `vectors` is None, or `on_refused(i, reason)` is told the server refused it. When this
    returns, every vector is on disk."""
    model, dims = embedder.model, embedder.dimensions
    writer = BackgroundWriter(cache, model, dims) if cache is not None else None

    def on_vectors(indexes: list[int], matrix: np.ndarray) -> None:
        if vectors is not None:
            vectors[slots[indexes]] = matrix
        if writer is not None:
            writer.put([(keys[i], row) for i, row in zip(indexes, matrix)])

    concurrency = min(max_concurrent, getattr(embedder, "max_concurrency", max_concurrent))
    scope = f"{embedder.provider}:{getattr(embedder, 'base_url', None) or ''}:{model}"
    try:
        await _embed_all(texts, token_counts, embedder, on_vectors, on_refused, stats, concurrency, batch_size,
                         max_retries, progress, shared_rate_limiter(scope, requests_per_minute, tokens_per_minute))
    except BaseException:
        if writer is not None:
            writer.close(raise_error=False)  # every vector received reaches the disk; the run's error wins
        raise
    if writer is not None:
        writer.close()


def embed_chunks(chunks: pd.DataFrame, embedder: Embedder, cache: CacheStore | None = None,
                 max_concurrent: int = 10, batch_size: int = 100, max_retries: int = DEFAULT_MAX_RETRIES,
                 estimate_only: bool = False, owner: str | None = None, progress: ProgressFn | None = None,
                 requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 keep_vectors: bool = True, use_async: bool = True,
                 max_refused_share: float = DEFAULT_MAX_REFUSED_SHARE) -> EmbedResult:
    """`embed_chunks_async` on a new event loop (the embedder's client is created inside it).

    `use_async=False` sends one request at a time, each after the previous one's answer
    (for servers that take no concurrency); the result is the same."""
    return asyncio.run(embed_chunks_async(
        chunks, embedder, cache, max_concurrent if use_async else 1, batch_size, max_retries, estimate_only, owner,
        progress, requests_per_minute, tokens_per_minute, keep_vectors, max_refused_share))
