"""`VectorCache`: the cache in one SQLite file (the default, one machine): its vectors by
(model, dimensions, key) and its owners' references to them (`vectors.CacheStore`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from .damaged import is_damage, open_or_replace, reports_damage
from .refs import DEFAULT_GRACE_DAYS
from .schema import WriteTransaction, connect, migrate
from .sql import SqliteSql
from .vectors import CacheStore, Row

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


class VectorCache(CacheStore):
    def __init__(self, path: Path | str, grace_days: float = DEFAULT_GRACE_DAYS):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = open_or_replace(self.path, _open)
        super().__init__(str(self.path), db, SqliteSql(db), grace_days)

    def _translated(self, exc: Exception) -> Exception | None:
        # Damage SQLite finds in use marks the file for a check at the next opening (damaged.py).
        if isinstance(exc, sqlite3.DatabaseError) and is_damage(exc):
            return reports_damage(self.path, exc)
        return None

    def _select(self, columns: str, model: str, dims: int, keys: Iterable[bytes]) -> Iterator[tuple]:
        for part in _chunks(sorted(keys)):  # in index order: each query walks the b-tree forward
            marks = ",".join("?" * len(part))
            yield from self._db.execute(
                f"SELECT {columns} FROM vectors WHERE model=? AND dims=? AND key IN ({marks})", (model, dims, *part))

    def _insert(self, rows: list[Row]) -> None:
        # sqlite3 binds any buffer as a BLOB: contiguous float32 rows go in without a copy.
        with WriteTransaction(self._db):
            self._db.executemany(
                "INSERT OR IGNORE INTO vectors (model, dims, key, added, vector) VALUES (?, ?, ?, ?, ?)", rows)
