"""The embedding loop: reuse what is cached, pack the rest into requests, keep at most
`max_concurrent` in flight, retry what fails transiently, write results back in order.

- Requests are packed to the provider's limits: inputs per request (and `batch_size`),
  tokens per request; an input over the per-input limit is refused before any request.
- 429s, 5xx, timeouts and dropped connections are retried with exponential backoff and
  full jitter, or after the wait the server asked for (`retry-after-ms`, `Retry-After`,
  `x-ratelimit-reset-*`). A request rejected as too large is split in two.
- Concurrency is AIMD (as TCP): two rounds of requests in a row in which 429s outnumber
  successes halve the number allowed in flight; every other round adds one back, up to
  `max_concurrent`. Sporadic 429s cost a retry, not the throughput.
- Optional requests- and tokens-per-minute budgets are shared by every request of the
  process (`shared_rate_limiter`).
- Responses with the wrong number of vectors or the wrong dimensions are errors.
- Vectors are reused by (model, dimensions, sha256 of the embedded text), and every
  response is written to the cache as it arrives, so a crash loses nothing paid for.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import hashlib
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..chunk.chunker import embedding_text
from .providers import Embedder, EmbeddingResponseError
from .cache import BackgroundWriter, VectorCache

ProgressFn = Callable[["EmbedStats"], None]

MAX_WAIT_S = 60.0  # longest single wait before a retry, whatever the server suggests
# Full jitter: retry k waits uniform(0, min(cap, base * 2**k)): within 0.2 s, 0.4 s, ... 30 s.
# Early retries are quick because sporadic failures are the common case (a request that
# is unlucky several times in a row would otherwise hold up the whole run); a server that
# keeps refusing is handled by halving concurrency. Ten retries wait ~1 minute in all.
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 30.0
DEFAULT_MAX_RETRIES = 10


@dataclass
class EmbedStats:
    chunks: int = 0
    unique_texts: int = 0
    reused: int = 0
    to_embed: int = 0
    embedded: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 answers
    splits: int = 0
    tokens: int = 0
    estimated_usd: float = 0.0
    seconds: float = 0.0  # the whole call
    embed_seconds: float = 0.0  # from the first request to the last response
    peak_in_flight: int = 0
    lowest_concurrency: int = 0  # the AIMD limit's lowest point (max_concurrent if never lowered)
    pruned: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def chunks_per_second(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds else 0.0


@dataclass
class EmbedResult:
    # repr=False on the big fields: asyncio.run formats its task's result with repr() on the
    # way out (CPython's signal-handler restore), which would print 10^4 ids and vectors.
    chunk_ids: list[str] = field(repr=False)
    # float32 (n, dims), row i for chunk_ids[i]; (0, dims) if estimate_only; None when every
    # vector is in the cache under `keys` (keep_vectors=False: read them from there in batches).
    vectors: np.ndarray | None = field(repr=False)
    model: str
    dimensions: int
    stats: EmbedStats
    keys: list[bytes] = field(default_factory=list, repr=False)  # text_key of row i: its vector's cache key

    @property
    def has_vectors(self) -> bool:
        """False for an estimate_only result: it holds no vectors, in memory or in the cache."""
        return self.vectors is None or len(self.vectors) == len(self.chunk_ids)


class EmbeddingFailed(RuntimeError):
    """Retries were exhausted or the server answered with something unusable."""


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


# -- how long the server asks us to wait ---------------------------------------------


def _header_seconds(value: str | None) -> float | None:
    """Seconds in `Retry-After` (a number or an HTTP date) or in OpenAI's reset durations
    such as "1s", "6m0s", "20ms"."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    total, matched = 0.0, False
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value):
        matched = True
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    if matched:
        return total
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait the response asks for, or None (then exponential backoff decides).

    `retry-after-ms`, then `Retry-After`: the server's own answer. Otherwise the
    `x-ratelimit-reset-*` of the limits reported exhausted (`x-ratelimit-remaining-*` of
    0), or, when none says so, the earliest reset: waiting for a whole-minute token window
    to refill completely would be far longer than needed for one request.
    """
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    after = _header_seconds(headers.get("retry-after"))
    if after is not None:
        return after
    resets = {kind: _header_seconds(headers.get(f"x-ratelimit-reset-{kind}")) for kind in ("requests", "tokens")}
    resets = {k: v for k, v in resets.items() if v is not None}
    exhausted = [v for k, v in resets.items() if headers.get(f"x-ratelimit-remaining-{k}", "").strip() == "0"]
    if exhausted:
        return max(exhausted)
    return min(resets.values()) if resets else None


def classify_error(exc: BaseException) -> str:
    """'rate_limit', 'server', 'network', 'too_large', 'response', 'bad_response' or 'fatal'."""
    import openai

    if isinstance(exc, EmbeddingResponseError):
        return "response" if exc.retryable else "bad_response"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit"
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, asyncio.TimeoutError)):
        return "network"
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return "server"
        text = str(exc).lower()
        if exc.status_code in (400, 413) and ("token" in text or "too large" in text or "too many" in text
                                              or "too long" in text):
            return "too_large"
    return "fatal"


RETRYABLE = {"rate_limit", "server", "network", "response"}


def backoff_seconds(attempt: int, hinted: float | None) -> float:
    """The wait before retry number `attempt` (1, 2, ...): the server's hint with a little
    jitter, else exponential backoff with full jitter."""
    if hinted is not None:
        return min(MAX_WAIT_S, hinted) * random.uniform(1.0, 1.2)
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt))


# -- concurrency and rate ---------------------------------------------------------------


class AdaptiveLimit:
    """At most `limit` requests in flight, and `limit` never above `maximum`.

    Slots are granted first come, first served (a deque of futures: O(1) per request
    however many batches wait). The limit is judged once per round of `limit` answers: two
    rounds in a row with more 429s than successes halve it (one such round happens by
    chance when a server refuses requests at random: with 30% refused, one round in 20),
    any other round below `maximum` adds one. Answers to requests sent before the last
    decrease are not counted: they report on the old limit, and counting them would halve
    it again for the same congestion.
    """

    def __init__(self, maximum: int):
        self.maximum = self.limit = self.lowest = maximum
        self.in_flight = 0
        self.peak = 0
        self.epoch = 0  # bumped at every decrease
        self._ok = 0
        self._refused = 0
        self._refused_rounds = 0  # consecutive rounds with more 429s than successes
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch to pass to `record` with the answer."""
        if self.in_flight < self.limit and not self._waiters:
            self._take()
            return self.epoch
        granted = asyncio.get_running_loop().create_future()
        self._waiters.append(granted)
        self._wake()  # the queue may hold only waiters that were cancelled meanwhile
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():  # granted as we were cancelled: give it back
                self.release()
            raise
        return self.epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def record(self, rate_limited: bool, epoch: int) -> None:
        """Count one answer; at the end of a round, halve or grow the limit."""
        if epoch != self.epoch:
            return
        if rate_limited:
            self._refused += 1
        else:
            self._ok += 1
        if self._ok + self._refused < self.limit:
            return
        refused_round = self._refused > self._ok
        self._ok = self._refused = 0
        self._refused_rounds = self._refused_rounds + 1 if refused_round else 0
        if self._refused_rounds >= 2:
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self.epoch += 1
            self._refused_rounds = 0
        elif not refused_round and self.limit < self.maximum:
            self.limit += 1
            self._wake()

    def _take(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)


class RateLimiter:
    """Requests- and tokens-per-minute budgets, as a generic cell rate algorithm.

    `reserve(tokens)` books the request's place in both budgets and returns how long to
    wait before sending; bookings are first come, first served. Up to `burst_s` seconds of
    budget may be spent at once. Time-based and thread-safe, so one instance can serve
    every event loop and thread of a process.
    """

    def __init__(self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 burst_s: float = 1.0):
        self.rates = (requests_per_minute / 60 if requests_per_minute else None,
                      tokens_per_minute / 60 if tokens_per_minute else None)
        self.burst_s = burst_s
        self._tat = [0.0, 0.0]  # theoretical arrival time of the next unit, per budget
        self._lock = threading.Lock()

    def reserve(self, tokens: int) -> float:
        with self._lock:
            now = time.monotonic()
            start = now
            for rate, tat in zip(self.rates, self._tat):
                if rate:
                    start = max(start, tat - self.burst_s)
            for i, (rate, cost) in enumerate(zip(self.rates, (1, tokens))):
                if rate:
                    self._tat[i] = max(self._tat[i], start) + cost / rate
            return start - now


_shared_limiters: dict[tuple, RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_rate_limiter(scope: str, requests_per_minute: float | None,
                        tokens_per_minute: float | None) -> RateLimiter | None:
    """The process's one limiter for `scope` (a provider account and model) and budgets."""
    if not requests_per_minute and not tokens_per_minute:
        return None
    with _shared_lock:
        return _shared_limiters.setdefault((scope, requests_per_minute, tokens_per_minute),
                                           RateLimiter(requests_per_minute, tokens_per_minute))


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
    stats: EmbedStats,
    max_concurrent: int,
    batch_size: int,
    max_retries: int,
    progress: ProgressFn | None,
    rate: RateLimiter | None,
) -> None:
    limit = AdaptiveLimit(max_concurrent)
    max_inputs = min(batch_size, embedder.max_inputs_per_request)

    failed = False  # set before a fatal error is raised, so queued requests are not sent

    async def send(indexes: list[int], tokens: int) -> tuple[np.ndarray | None, Exception | None, int]:
        """One request through a slot: (vectors, None, epoch) or (None, error, epoch)."""
        epoch = await limit.acquire()
        if failed:
            limit.release()
            raise asyncio.CancelledError
        try:
            if rate is not None:
                # Inside the slot: when the budget binds, it is the bottleneck, not the slots.
                await asyncio.sleep(rate.reserve(tokens))
            stats.requests += 1
            return await embedder.embed([texts[i] for i in indexes]), None, epoch
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
            if kind == "too_large" and len(indexes) > 1:
                stats.splits += 1
                half = len(indexes) // 2
                await asyncio.gather(run(indexes[:half]), run(indexes[half:]))
                return
            if kind not in RETRYABLE or attempt >= max_retries:
                failed = True  # no await before the raise: no queued request slips out
                raise EmbeddingFailed(
                    f"embedding request of {len(indexes)} inputs failed after {attempt} retries: "
                    f"{type(error).__name__}: {error}"
                ) from error
            if kind == "rate_limit":
                stats.rate_limited += 1
                limit.record(True, epoch)
            attempt += 1
            stats.retries += 1
            await asyncio.sleep(backoff_seconds(attempt, retry_after_seconds(error)))

    batches = pack_requests(token_counts, max_inputs, embedder.max_tokens_per_request)
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
    columns = chunks["path"].tolist(), chunks["symbol"].tolist(), chunks["text"].tolist()
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
    cache: VectorCache | None = None,
    max_concurrent: int = 10,
    batch_size: int = 100,
    max_retries: int = DEFAULT_MAX_RETRIES,
    estimate_only: bool = False,
    owner: str | None = None,
    progress: ProgressFn | None = None,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    keep_vectors: bool = True,
) -> EmbedResult:
    """Vectors for every chunk (rows in `chunks` order), embedding only texts not cached.

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
    keys = [text_key(t) for t in _embedding_texts(chunks)]
    unique, first_rows, row_to_unique = _dedupe(keys)
    stats = EmbedStats(chunks=len(keys), unique_texts=len(unique), lowest_concurrency=max_concurrent)
    if cache is not None and owner and not estimate_only:
        cache.reserve(owner, model, dims, unique)  # before reading: see vector_cache
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
    if missing:
        await _embed_missing(list(_embedding_texts(chunks, miss_rows)), miss_tokens, [unique[u] for u in missing],
                             np.asarray(missing), vectors, embedder, cache, stats, max_concurrent, batch_size,
                             max_retries, progress, requests_per_minute, tokens_per_minute)
    if cache is not None and owner:
        stats.pruned = cache.set_refs(owner, model, dims, unique)
    stats.seconds = time.perf_counter() - started
    if vectors is not None and len(unique) < len(keys):
        vectors = vectors[row_to_unique]
    return EmbedResult(chunk_ids, vectors, model, dims, stats, keys)


async def _embed_missing(texts: list[str], token_counts: list[int], keys: list[bytes], slots: np.ndarray,
                         vectors: np.ndarray | None, embedder: Embedder, cache: VectorCache | None,
                         stats: EmbedStats, max_concurrent: int, batch_size: int, max_retries: int,
                         progress: ProgressFn | None, requests_per_minute: float | None,
                         tokens_per_minute: float | None) -> None:
    """Embed `texts`; the vector of texts[i] goes to the cache and to vectors[slots[i]] unless
    `vectors` is None. When this returns, every vector is on disk."""
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
        await _embed_all(texts, token_counts, embedder, on_vectors, stats, concurrency, batch_size, max_retries,
                         progress, shared_rate_limiter(scope, requests_per_minute, tokens_per_minute))
    except BaseException:
        if writer is not None:
            writer.close(raise_error=False)  # every vector received reaches the disk; the run's error wins
        raise
    if writer is not None:
        writer.close()


def embed_chunks(chunks: pd.DataFrame, embedder: Embedder, cache: VectorCache | None = None,
                 max_concurrent: int = 10, batch_size: int = 100, max_retries: int = DEFAULT_MAX_RETRIES,
                 estimate_only: bool = False, owner: str | None = None, progress: ProgressFn | None = None,
                 requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 keep_vectors: bool = True) -> EmbedResult:
    """`embed_chunks_async` on a new event loop (the embedder's client is created inside it)."""
    return asyncio.run(embed_chunks_async(
        chunks, embedder, cache, max_concurrent, batch_size, max_retries, estimate_only, owner, progress,
        requests_per_minute, tokens_per_minute, keep_vectors))
