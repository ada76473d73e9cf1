"""The cache's SQL over either database: what `refs.OwnerRefs` and `vectors.CacheStore`
need from a connection, so the reference rules are written once.

The statements are the same on SQLite and PostgreSQL (both take `INSERT ... ON CONFLICT`);
what differs is how parameters are marked, how a write transaction excludes the other
writers, and how a list of keys is matched. Statements are written with `?` marks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from .keys import KEY_BYTES
from .schema import WriteTransaction

OWNER_KEYS_UPSERT = ("INSERT INTO owner_keys VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (owner, model, dims) DO UPDATE SET keys = excluded.keys")
META_UPSERT = "INSERT INTO meta VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"


class CacheSql(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement (`?` marks); returns a cursor to iterate or fetch from."""

    def write(self) -> AbstractContextManager[None]:
        """One write transaction, which no other writer of references runs beside."""

    def delete_keys(self, model: str, dims: int, raw_keys: bytes) -> int:
        """Delete the vectors of the 32-byte keys concatenated in `raw_keys`; returns how many."""


def split_keys(raw: bytes) -> list[bytes]:
    # bytes of each key exactly (numpy's bytes_ would drop trailing NULs)
    return [raw[i:i + KEY_BYTES] for i in range(0, len(raw), KEY_BYTES)]


class SqliteSql:
    """The cache file's connection: `BEGIN IMMEDIATE` serializes writers (see schema.py)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

    def write(self) -> WriteTransaction:
        return WriteTransaction(self.db)

    def delete_keys(self, model: str, dims: int, raw_keys: bytes) -> int:
        cursor = self.db.executemany("DELETE FROM vectors WHERE model=? AND dims=? AND key=?",
                                     [(model, dims, key) for key in split_keys(raw_keys)])
        return cursor.rowcount
