"""What an embedding run returns: its vectors (or their cache keys), its figures, its failure."""

from __future__ import annotations

import re

from dataclasses import dataclass, field

import numpy as np


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


# OpenAI-style keys (sk-..., sk-proj-...): a proxy may echo the one it was sent.
_KEY_RE = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")


def mask_secrets(text: str, *secrets: str | None) -> str:
    """`text` with each of `secrets` (the configured API key) and anything shaped like an
    OpenAI key replaced, for messages that leave the embedder (logs, run storage)."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "[masked]")
    return _KEY_RE.sub("sk-[masked]", text)
