"""Content-addressed store of embeddings: (model, dimensions, sha256 of embedded text).

One SQLite file shared by every repository and process (WAL, busy timeout), written as
responses arrive, so a run killed midway keeps every vector it already paid for. Each
vector is stored once however many chunks or repositories share its text; `refs`
records which repository uses which key so vectors nobody uses any more are pruned.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL, dims INTEGER NOT NULL, key BLOB NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (model, dims, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refs (
    owner TEXT NOT NULL, model TEXT NOT NULL, dims INTEGER NOT NULL, key BLOB NOT NULL,
    PRIMARY KEY (owner, model, dims, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_by_key ON refs (model, dims, key);
"""
_PARAMS_PER_QUERY = 900  # below SQLite's default host-parameter limit


def _chunks(items: list, size: int = _PARAMS_PER_QUERY) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class VectorCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> VectorCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get_many(self, model: str, dims: int, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for part in _chunks(keys):
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                f"SELECT key, vector FROM vectors WHERE model=? AND dims=? AND key IN ({marks})",
                (model, dims, *part),
            )
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype="<f4")
        return found

    def put_many(self, model: str, dims: int, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        rows = [(model, dims, k, np.ascontiguousarray(v, dtype="<f4").tobytes()) for k, v in items]
        with self._db:  # one transaction per response
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)

    def set_refs(self, owner: str, model: str, dims: int, keys: set[bytes]) -> int:
        """Make `keys` the set `owner` uses; drop vectors that `owner` alone used. Returns pruned."""
        old = {k for (k,) in self._db.execute(
            "SELECT key FROM refs WHERE owner=? AND model=? AND dims=?", (owner, model, dims))}
        gone, new = list(old - keys), list(keys - old)
        pruned = 0
        with self._db:
            self._db.execute("BEGIN")
            for part in _chunks(gone):
                marks = ",".join("?" * len(part))
                self._db.execute(
                    f"DELETE FROM refs WHERE owner=? AND model=? AND dims=? AND key IN ({marks})",
                    (owner, model, dims, *part))
            self._db.executemany("INSERT OR IGNORE INTO refs VALUES (?, ?, ?, ?)",
                                 [(owner, model, dims, k) for k in new])
            for part in _chunks(gone):
                marks = ",".join("?" * len(part))
                pruned += self._db.execute(
                    f"DELETE FROM vectors WHERE model=? AND dims=? AND key IN ({marks}) AND NOT EXISTS "
                    "(SELECT 1 FROM refs r WHERE r.model=vectors.model AND r.dims=vectors.dims AND r.key=vectors.key)",
                    (model, dims, *part)).rowcount
        return pruned

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM vectors WHERE model=?", (model,)).fetchone()[0]
