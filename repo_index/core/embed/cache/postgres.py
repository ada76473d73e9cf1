"""`PostgresVectorCache`: the cache on a PostgreSQL server (`REPO_INDEX_CACHE_URL`), shared
by every worker of a cluster, so no text is embedded twice across machines; the same
interface and reference rules as the SQLite file (`vectors.CacheStore`, `refs`).

Lookups send a batch of keys as one array (`key = ANY(...)`); a write is one transaction of
multi-row inserts. Two workers writing the same texts at once both succeed: a key already
stored is skipped (`ON CONFLICT DO NOTHING`), and each transaction inserts its keys in
sorted order, so two of them never wait on each other's keys in a cycle (a deadlock
PostgreSQL would break by failing one).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from psycopg2.extras import execute_values

from ...shared_store import masked_url
from .postgres_sql import KEYS_PER_QUERY, PostgresSql, connect
from .refs import DEFAULT_GRACE_DAYS
from .vectors import CacheStore, Row

_ROWS_PER_STATEMENT = 200  # ~1.2 MB of 1,536-d vectors per INSERT


class PostgresVectorCache(CacheStore):
    def __init__(self, url: str, grace_days: float = DEFAULT_GRACE_DAYS):
        db = connect(url)
        super().__init__(masked_url(url), db, PostgresSql(db), grace_days)

    def _select(self, columns: str, model: str, dims: int, keys: Iterable[bytes]) -> Iterator[tuple]:
        keys = list(keys)
        for i in range(0, len(keys), KEYS_PER_QUERY):
            cur = self._sql.execute(f"SELECT {columns} FROM vectors WHERE model=? AND dims=? AND key = ANY(?)",
                                    (model, dims, keys[i:i + KEYS_PER_QUERY]))
            for key, *rest in cur:  # bytea comes back as memoryview: keys must hash
                yield (bytes(key), *rest)

    def _insert(self, rows: list[Row]) -> None:
        rows = sorted(rows, key=lambda row: row[2])
        values = [(model, dims, key, added, vector.tobytes()) for model, dims, key, added, vector in rows]
        with self._sql.transaction() as cur:
            execute_values(cur, "INSERT INTO vectors (model, dims, key, added, vector) VALUES %s "
                           "ON CONFLICT DO NOTHING", values, page_size=_ROWS_PER_STATEMENT)
