"""`VectorCache`: the vectors of one cache file, by (model, dimensions, key), and its
owners' references to them (`refs.OwnerRefs`)."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .damaged import is_damage, open_or_replace, reports_damage
from .refs import DEFAULT_GRACE_DAYS, OwnerRefs
from .schema import WriteTransaction, connect, migrate

# Keys per `IN (...)` lookup: fewer, larger queries are faster; SQLite before 3.32 allows
# only 999 parameters per statement.
_PARAMS_PER_QUERY = 10_000 if sqlite3.sqlite_version_info >= (3, 32) else 900


def _chunks(items: list, size: int = _PARAMS_PER_QUERY) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _open(path: Path) -> sqlite3.Connection:
    db = connect(path)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def _damage_reported(method):
    """A damage error from SQLite while the cache is in use marks the file for a check at
    the next opening (see damaged.reports_damage) and says so."""
    @functools.wraps(method)
    def wrapper(self: VectorCache, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            raise reports_damage(self.path, exc) from exc
    return wrapper


class VectorCache:
    def __init__(self, path: Path | str, grace_days: float = DEFAULT_GRACE_DAYS):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = open_or_replace(self.path, _open)
        self._refs = OwnerRefs(self._db, grace_s=grace_days * 86400)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> VectorCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- vectors ------------------------------------------------------------

    def _select(self, columns: str, model: str, dims: int, keys: Iterable[bytes]) -> Iterator[tuple]:
        for part in _chunks(sorted(keys)):  # in index order: each query walks the b-tree forward
            marks = ",".join("?" * len(part))
            yield from self._db.execute(
                f"SELECT {columns} FROM vectors WHERE model=? AND dims=? AND key IN ({marks})", (model, dims, *part))

    @_damage_reported
    def get_many(self, model: str, dims: int, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among `keys` (read-only float32 views), by key."""
        return {key: np.frombuffer(blob, dtype="<f4") for key, blob in self._select("key, vector", model, dims, keys)}

    @_damage_reported
    def present(self, model: str, dims: int, keys: Iterable[bytes]) -> set[bytes]:
        """Which of `keys` are cached. Reads only the key index (a covering index), never a vector."""
        return {key for (key,) in self._select("key", model, dims, set(keys))}

    @_damage_reported
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
                              f"{self.path}")
        return out

    @_damage_reported
    def put_many(self, model: str, dims: int, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        """Store vectors, one transaction per call (one response). A key already present keeps
        its vector: the same text gives the same vector, and nothing is rewritten."""
        now = time.time()
        # sqlite3 binds any buffer as a BLOB: contiguous float32 rows go in without a copy.
        rows = [(model, dims, k, now, np.ascontiguousarray(v, dtype="<f4")) for k, v in items]
        with WriteTransaction(self._db):
            self._db.executemany(
                "INSERT OR IGNORE INTO vectors (model, dims, key, added, vector) VALUES (?, ?, ?, ?, ?)", rows)

    @_damage_reported
    def count(self, model: str | None = None) -> int:
        if model is None:
            return self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM vectors WHERE model=?", (model,)).fetchone()[0]

    # -- references (refs.OwnerRefs) ------------------------------------------

    @_damage_reported
    def reserve(self, owner: str, model: str, dims: int, keys: Iterable[bytes]) -> None:
        """Add refs from `owner` to `keys` (present or about to be embedded) without dropping any:
        from here on no other run prunes them, and a crash leaves them referenced."""
        self._refs.reserve(owner, model, dims, keys)

    @_damage_reported
    def set_refs(self, owner: str, model: str, dims: int, keys: Iterable[bytes]) -> int:
        """Make `keys` (in `model`, `dims`) exactly what `owner` uses; delete the vectors no owner
        uses any more, and old unreferenced ones. Returns the number of vectors deleted."""
        return self._refs.set_refs(owner, model, dims, keys)

    @_damage_reported
    def drop_owner(self, owner: str) -> int:
        """Forget a repository (it was removed): its vectors nobody else uses are deleted."""
        return self._refs.drop_owner(owner)

    @_damage_reported
    def owners(self) -> dict[str, int]:
        """How many keys each owner references."""
        return self._refs.owners()

    @_damage_reported
    def collect_unreferenced(self) -> int:
        """Delete unreferenced vectors older than the grace period now; returns how many."""
        return self._refs.collect_unreferenced()
