"""Texts the embedding server refused, as the chunks that carry them: counted against the
share of a repository's chunks allowed to go without a vector, and listed with their file
and lines for the run's metadata."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .results import EmbeddingFailed, EmbedStats, Refusal

SETTING = "REPO_INDEX_MAX_REFUSED_SHARE"


class RefusedChunks:
    """Refusals of distinct texts (indexes into the run's distinct texts) mapped to the chunk
    rows that share them; `add` fails the run once more chunks than allowed are refused."""

    def __init__(self, chunks: pd.DataFrame, row_to_unique: np.ndarray, max_share: float, stats: EmbedStats):
        self._chunks = chunks
        self._row_to_unique = row_to_unique
        self.max_share = max_share
        self.allowed = int(max_share * len(chunks))  # chunks that may be refused
        self._stats = stats
        self.texts: dict[int, str] = {}  # distinct text -> the server's reason
        self._rows: list[int] = []

    def add(self, text: int, reason: str) -> None:
        self.texts[text] = reason
        self._rows += np.flatnonzero(self._row_to_unique == text).tolist()
        self._stats.refused = len(self._rows)
        if len(self._rows) > self.allowed:
            first = self.records()[0]
            raise EmbeddingFailed(
                f"the embedding server refused {len(self._rows)} of {len(self._chunks)} chunks, more than "
                f"{SETTING}={self.max_share:g} allows ({self.allowed}); stopped there. "
                f"E.g. {first.where()}: {first.reason}")

    def records(self) -> list[Refusal]:
        """One per refused chunk, in table order."""
        c = self._chunks
        return [Refusal(str(c["chunk_id"].iat[r]), str(c["path"].iat[r]), int(c["start_line"].iat[r]),
                        int(c["end_line"].iat[r]), self.texts[int(self._row_to_unique[r])])
                for r in sorted(self._rows)]
