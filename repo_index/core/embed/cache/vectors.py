"""`CacheStore`: the cache's interface, written once over either database (`store.VectorCache`
on a SQLite file, `postgres.PostgresVectorCache` on a server). A database supplies how it
looks keys up and inserts rows; the references are `refs.OwnerRefs` over its `sql.CacheSql`."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator
from typing import Any, Self

import numpy as np

from .refs import OwnerRefs
from .sql import CacheSql

Row = tuple[str, int, bytes, float, np.ndarray]  # model, dims, key, added, vector


def translated(method):
    """An error of the database is re-raised as the store's `_translated` says (SQLite:
    damage found in use marks the file), else as it is."""
    @functools.wraps(method)
    def wrapper(self: CacheStore, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            better = self._translated(exc)
            if better is None:
                raise
            raise better from exc
    return wrapper


class CacheStore:
    def __init__(self, location: str, db: Any, sql: CacheSql, grace_days: float):
        self.location = location  # what messages call the cache (a password in a URL masked)
        self._db = db  # the database's connection, closed with the store
        self._sql = sql
        self._refs = OwnerRefs(sql, grace_s=grace_days * 86400)

    # -- what a database supplies ------------------------------------------------

    def _select(self, columns: str, model: str, dims: int, keys: Iterable[bytes]) -> Iterator[tuple]:
        """Rows of `columns` ("key" first) for those of `keys` that are stored."""
        raise NotImplementedError

    def _insert(self, rows: list[Row]) -> None:
        """Insert in one transaction; a key already stored keeps its row."""
        raise NotImplementedError

    def _translated(self, exc: Exception) -> Exception | None:
        return None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- vectors -------------------------------------------------------------------

    @translated
    def get_many(self, model: str, dims: int, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among `keys` (read-only float32 views), by key."""
        return {key: np.frombuffer(blob, dtype="<f4") for key, blob in self._select("key, vector", model, dims, keys)}

    @translated
    def present(self, model: str, dims: int, keys: Iterable[bytes]) -> set[bytes]:
        """Which of `keys` are cached. Reads only the key index (a covering index), never a vector."""
        return {key for (key,) in self._select("key", model, dims, set(keys))}

    @translated
    def matrix(self, model: str, dims: int, keys: list[bytes]) -> np.ndarray:
        """The vectors of `keys` as a float32 (len(keys), dims) matrix, row i for keys[i].

        Raises LookupError saying how many are missing. Callers bound len(keys): the matrix
        is the only copy held (no dict of every vector, as get_many builds).
        """
        rows_of: dict[bytes, list[int]] = {}
        for row, key in enumerate(keys):
            rows_of.setdefault(key, []).append(row)
        out = np.empty((len(keys), dims), dtype=np.float32)
        found = 0
        for key, blob in self._select("key, vector", model, dims, rows_of):
            out[rows_of[key]] = np.frombuffer(blob, dtype="<f4")
            found += 1
        if found < len(rows_of):
            raise LookupError(f"{len(rows_of) - found} of {len(rows_of)} vectors are not in the embedding cache "
                              f"{self.location}")
        return out

    @translated
    def put_many(self, model: str, dims: int, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        """Store vectors, one transaction per call (one response). A key already present keeps
        its vector: the same text gives the same vector, and nothing is rewritten."""
        now = time.time()
        rows = [(model, dims, k, now, np.ascontiguousarray(v, dtype="<f4")) for k, v in items]
        if rows:
            self._insert(rows)

    @translated
    def count(self, model: str | None = None) -> int:
        if model is None:
            return self._sql.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        return self._sql.execute("SELECT COUNT(*) FROM vectors WHERE model=?", (model,)).fetchone()[0]

    # -- references (refs.OwnerRefs) ------------------------------------------------

    @translated
    def reserve(self, owner: str, model: str, dims: int, keys: Iterable[bytes]) -> None:
        """Add refs from `owner` to `keys` (present or about to be embedded) without dropping any:
        from here on no other run prunes them, and a crash leaves them referenced."""
        self._refs.reserve(owner, model, dims, keys)

    @translated
    def set_refs(self, owner: str, model: str, dims: int, keys: Iterable[bytes]) -> int:
        """Make `keys` (in `model`, `dims`) exactly what `owner` uses; delete the vectors no owner
        uses any more, and old unreferenced ones. Returns the number of vectors deleted."""
        return self._refs.set_refs(owner, model, dims, keys)

    @translated
    def drop_owner(self, owner: str) -> int:
        """Forget a repository (it was removed): its vectors nobody else uses are deleted."""
        return self._refs.drop_owner(owner)

    @translated
    def owners(self) -> dict[str, int]:
        """How many keys each owner references."""
        return self._refs.owners()

    @translated
    def collect_unreferenced(self) -> int:
        """Delete unreferenced vectors older than the grace period now; returns how many."""
        return self._refs.collect_unreferenced()
