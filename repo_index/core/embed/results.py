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
    refused: int = 0  # chunks whose text the server refused alone (no vector; tried again next run)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def chunks_per_second(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds else 0.0




@dataclass(frozen=True)
class Refusal:
    """A chunk whose text the embedding server refused on its own, and the server's reason
    (secrets masked)."""

    chunk_id: str
    path: str
    start_line: int
    end_line: int
    reason: str

    def where(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"


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
    # Chunks the server refused: they have a key but no vector (a zero row in `vectors`), and
    # are left out of the collection. After a reload only chunk_id is known (see stored.py).
    refused: list[Refusal] = field(default_factory=list, repr=False)

    def embedded_rows(self) -> list[int]:
        """Rows of the chunks that have a vector: all but the refused ones."""
        if not self.refused:
            return list(range(len(self.chunk_ids)))
        refused = {r.chunk_id for r in self.refused}
        return [i for i, cid in enumerate(self.chunk_ids) if cid not in refused]

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
