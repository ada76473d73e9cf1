"""The cache's connection to PostgreSQL (`REPO_INDEX_CACHE_URL`): connecting, the tables,
and `sql.CacheSql` for `refs.OwnerRefs`.

The tables are SQLite's (schema.py) in a schema of their own, `repo_index_cache`, so they
never meet Dagster's tables when both live in one database. Keys and vectors are `bytea`
(little-endian float32, as in the SQLite file). Writers of references exclude each other
with a transaction-scoped advisory lock, as `BEGIN IMMEDIATE` does on SQLite: a prune
reads every owner's references and must not miss a reservation committed meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions

from ...shared_store import masked_error, masked_url
from .sql import split_keys

SCHEMA = "repo_index_cache"
# pg_advisory_xact_lock's key for this cache's writers of references (and its schema's
# creation); any bigint no other user of the database takes ("repo_cac" in ASCII).
_LOCK_KEY = 0x7265706F5F636163
_TABLES = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, dims INTEGER NOT NULL, key BYTEA NOT NULL, "
    "added DOUBLE PRECISION NOT NULL, vector BYTEA NOT NULL, PRIMARY KEY (model, dims, key))",
    # Float32 does not compress: stored out of line as it is, pglz is not tried on every row.
    "ALTER TABLE vectors ALTER COLUMN vector SET STORAGE EXTERNAL",
    "CREATE INDEX IF NOT EXISTS vectors_by_added ON vectors (added)",
    "CREATE TABLE IF NOT EXISTS owner_keys (owner TEXT NOT NULL, model TEXT NOT NULL, dims INTEGER NOT NULL, "
    "keys BYTEA NOT NULL, PRIMARY KEY (owner, model, dims))",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value DOUBLE PRECISION)",
]
KEYS_PER_QUERY = 10_000


class CacheUnavailable(RuntimeError):
    """The PostgreSQL server of the cache cannot be reached or refused the connection."""


def _parameters(url: str) -> dict[str, str]:
    try:
        return psycopg2.extensions.parse_dsn(url)
    except psycopg2.Error:  # not a URL or "key=value" string: connect() says so
        return {}


def connect(url: str, connect_timeout_s: int = 10) -> psycopg2.extensions.connection:
    """A connection in autocommit (transactions are explicit: `PostgresSql.write`), its
    search path on the cache's schema, the tables created if missing."""
    given = _parameters(url)
    defaults = {"connect_timeout": connect_timeout_s, "application_name": "repo_index cache"}
    try:
        db = psycopg2.connect(url, **{k: v for k, v in defaults.items() if k not in given})
    except psycopg2.Error as exc:
        raise CacheUnavailable(f"cannot open the embedding cache {masked_url(url)} (REPO_INDEX_CACHE_URL): "
                               f"{masked_error(exc, url)}") from None
    try:
        db.autocommit = True
        with db.cursor() as cur:
            cur.execute(f"SET search_path TO {SCHEMA}")
            cur.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.meta",))
            if cur.fetchone()[0] is None:
                _create_tables(cur)
    except BaseException:
        db.close()
        raise
    return db


def _create_tables(cur) -> None:
    # Two workers starting at once would both create: `IF NOT EXISTS` is not atomic in
    # PostgreSQL (the loser fails on a duplicate catalog row), so creation is serialized,
    # and in one transaction the tables appear all at once (meta, checked first, last).
    cur.execute("BEGIN")
    try:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for statement in _TABLES:
            cur.execute(statement)
        cur.execute("COMMIT")
    except BaseException:
        _rollback(cur)
        raise


def _rollback(cur) -> None:
    try:
        cur.execute("ROLLBACK")
    except psycopg2.Error:  # the connection is gone: so is its transaction; the first error tells why
        pass


class PostgresSql:
    """`sql.CacheSql` on a psycopg2 connection. The connection is shared with the writer
    thread (cache.writer): a lock keeps one thread's transaction whole."""

    def __init__(self, db: psycopg2.extensions.connection):
        self.db = db
        self.lock = threading.RLock()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self.lock:
            cur = self.db.cursor()
            cur.execute(sql.replace("?", "%s"), params)
            return cur

    @contextmanager
    def transaction(self, *lock_key: int) -> Iterator[Any]:
        """One transaction on a cursor (holding the advisory lock `lock_key` if given)."""
        with self.lock, self.db.cursor() as cur:
            cur.execute("BEGIN")
            try:
                if lock_key:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", lock_key)
                yield cur
            except BaseException:
                _rollback(cur)
                raise
            cur.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[None]:
        with self.transaction(_LOCK_KEY):
            yield

    def delete_keys(self, model: str, dims: int, raw_keys: bytes) -> int:
        deleted = 0
        keys = split_keys(raw_keys)
        for i in range(0, len(keys), KEYS_PER_QUERY):
            cur = self.execute("DELETE FROM vectors WHERE model=? AND dims=? AND key = ANY(?)",
                               (model, dims, keys[i:i + KEYS_PER_QUERY]))
            deleted += cur.rowcount
        return deleted
