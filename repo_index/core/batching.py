"""The embedding loop: reuse what is cached, pack the rest into requests, keep at most
`max_concurrent` in flight, retry what fails transiently, write results back in order.

Requests are packed to the provider's limits (inputs per request, tokens per request).
429s, 5xx, timeouts and dropped connections are retried with exponential backoff and
full jitter, honouring `Retry-After` / `x-ratelimit-reset-*`; a run of 429s also halves
the number of requests allowed in flight, which then grows back one at a time. A
request rejected as too large is split in two. Every response is written to the cache
as it arrives, so a crash loses nothing already paid for.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .chunker import embedding_text
from .embedders import Embedder, EmbeddingResponseError
from .vector_cache import VectorCache

ProgressFn = Callable[["EmbedStats"], None]


@dataclass
class EmbedStats:
    chunks: int = 0
    unique_texts: int = 0
    reused: int = 0
    to_embed: int = 0
    embedded: int = 0
    requests: int = 0
    retries: int = 0
    splits: int = 0
    tokens: int = 0
    estimated_usd: float = 0.0
    seconds: float = 0.0
    pruned: int = 0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class EmbedResult:
    chunk_ids: list[str]
    vectors: np.ndarray  # float32 (n, dimensions), row i belongs to chunk_ids[i]
    model: str
    dimensions: int
    stats: EmbedStats


class EmbeddingFailed(RuntimeError):
    """Retries were exhausted or the server answered with something unusable."""


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _header_seconds(value: str | None) -> float | None:
    """`Retry-After` seconds, or OpenAI's reset durations like "1s", "6m0s", "20ms"."""
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
    return total if matched else None


def retry_after_seconds(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    waits = [_header_seconds(headers.get(h)) for h in
             ("retry-after", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")]
    waits = [w for w in waits if w is not None]
    return max(waits) if waits else None


def classify_error(exc: BaseException) -> str:
    """'rate_limit', 'server', 'network', 'too_large', 'response' or 'fatal'."""
    import openai

    if isinstance(exc, EmbeddingResponseError):
        return "response"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit"
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, asyncio.TimeoutError)):
        return "network"
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return "server"
        text = str(exc).lower()
        if exc.status_code in (400, 413) and ("token" in text or "too large" in text or "too many" in text):
            return "too_large"
    return "fatal"


class AdaptiveLimit:
    """A semaphore whose size halves on rate limiting and grows back after successes."""

    def __init__(self, maximum: int):
        self.maximum = maximum
        self.limit = maximum
        self.in_flight = 0
        self.peak = 0
        self._successes = 0
        self._cond = asyncio.Condition()

    async def __aenter__(self) -> AdaptiveLimit:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        return self

    async def __aexit__(self, *exc) -> None:
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def on_rate_limited(self) -> None:
        self.limit = max(1, self.limit // 2)
        self._successes = 0

    async def on_success(self) -> None:
        if self.limit < self.maximum:
            self._successes += 1
            if self._successes >= self.limit:
                self._successes = 0
                async with self._cond:
                    self.limit += 1
                    self._cond.notify_all()


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
) -> int:
    limit = AdaptiveLimit(max_concurrent)
    max_inputs = min(batch_size, embedder.max_inputs_per_request)

    async def run(indexes: list[int]) -> None:
        attempt = 0
        while True:
            async with limit:
                stats.requests += 1
                try:
                    matrix = await embedder.embed([texts[i] for i in indexes])
                    error = None
                except Exception as exc:  # classified below; fatal ones re-raised
                    error = exc
            if error is None:
                await limit.on_success()
                on_vectors(indexes, matrix)
                stats.embedded += len(indexes)
                stats.tokens += sum(token_counts[i] for i in indexes)
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
            if kind in ("fatal", "too_large") or attempt >= max_retries:
                raise EmbeddingFailed(
                    f"embedding request of {len(indexes)} inputs failed after {attempt} retries: "
                    f"{type(error).__name__}: {error}"
                ) from error
            if kind == "rate_limit":
                limit.on_rate_limited()
            attempt += 1
            stats.retries += 1
            backoff = random.uniform(0, min(30.0, 0.5 * 2 ** attempt))  # full jitter
            hinted = retry_after_seconds(error)
            await asyncio.sleep(min(60.0, hinted + random.uniform(0, 0.1)) if hinted is not None else backoff)

    batches = pack_requests(token_counts, max_inputs, embedder.max_tokens_per_request)
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
        await embedder.aclose()
    return limit.peak


def embed_chunks(
    chunks: pd.DataFrame,
    embedder: Embedder,
    cache: VectorCache | None = None,
    max_concurrent: int = 10,
    batch_size: int = 100,
    max_retries: int = 8,
    estimate_only: bool = False,
    owner: str | None = None,
    progress: ProgressFn | None = None,
) -> EmbedResult:
    """Vectors for every chunk (rows in `chunks` order), embedding only texts not cached.

    With `owner` (the repository), the cache's references are updated after success and
    vectors no repository uses any more are pruned.
    """
    started = time.perf_counter()
    model, dims = embedder.model, embedder.dimensions
    texts = [embedding_text(p, s, t) for p, s, t in zip(chunks["path"], chunks["symbol"], chunks["text"])]
    keys = [text_key(t) for t in texts]
    stats = EmbedStats(chunks=len(texts))

    first_row: dict[bytes, int] = {}
    for row, key in enumerate(keys):
        first_row.setdefault(key, row)
    stats.unique_texts = len(first_row)
    vectors: dict[bytes, np.ndarray] = cache.get_many(model, dims, list(first_row)) if cache else {}
    stats.reused = len(vectors)

    missing = [k for k in first_row if k not in vectors]
    stats.to_embed = len(missing)
    miss_texts = [texts[first_row[k]] for k in missing]
    miss_tokens = [int(chunks["n_tokens"].iat[first_row[k]]) for k in missing]
    stats.estimated_usd = sum(miss_tokens) / 1e6 * embedder.info.usd_per_million_tokens

    if estimate_only:
        stats.tokens = sum(miss_tokens)
        stats.seconds = time.perf_counter() - started
        return EmbedResult(list(chunks["chunk_id"]), np.zeros((0, dims), np.float32), model, dims, stats)

    def on_vectors(indexes: list[int], matrix: np.ndarray) -> None:
        got = [(missing[i], matrix[j]) for j, i in enumerate(indexes)]
        if cache:
            cache.put_many(model, dims, got)
        vectors.update(got)

    concurrency = min(max_concurrent, getattr(embedder, "max_concurrency", max_concurrent))
    if missing:
        asyncio.run(_embed_all(miss_texts, miss_tokens, embedder, on_vectors, stats,
                               concurrency, batch_size, max_retries, progress))

    matrix = np.empty((len(keys), dims), dtype=np.float32)
    for row, key in enumerate(keys):
        matrix[row] = vectors[key]
    if cache and owner:
        stats.pruned = cache.set_refs(owner, model, dims, set(first_row))
    stats.seconds = time.perf_counter() - started
    return EmbedResult(list(chunks["chunk_id"]), matrix, model, dims, stats)
