"""Which repository (owner) uses which cached vectors, and the pruning those references allow.

`owner_keys` has one row per owner and (model, dimensions), its keys as one sorted blob of
32-byte digests, searched in place with numpy. A first run of a large repository
references 100k+ keys: one blob is one write of a few MB, where a row per key cost
several microseconds each (~1 s per 160k keys, twice per run). The rules that keep
pruning safe for the steps that read a repository's vectors back from the cache after
`chunk_embeddings` (its IO manager checks they are all here; `vector_collection` reads
them in batches):

- A run first `reserve`s refs for every key it needs, before reading or embedding, so a
  concurrent run pruning its own old keys can never delete a vector this run is using;
  a run killed midway leaves its vectors referenced by its owner.
- After a successful run, `set_refs` makes the owner reference exactly its current keys
  (in its current model): vectors that no owner references any more are pruned at once.
  So every vector of every repository's latest materialization stays.
- Vectors written without an owner (library use, query vectors) are unreferenced: they
  are collected once they are older than the grace period.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np

from .keys import KEY_BYTES, blob_keys, contains, key_array
from .sql import META_UPSERT, OWNER_KEYS_UPSERT, CacheSql

DEFAULT_GRACE_DAYS = 7.0
_GC_EVERY_S = 3600.0  # the unreferenced sweep scans the old end of the table: at most hourly


class OwnerRefs:
    """The owners' references to the vectors of one cache (its connection, SQLite or
    PostgreSQL), and the deletion of vectors no owner references: at once when an owner
    drops them, after `grace_s` seconds for vectors never referenced."""

    def __init__(self, db: CacheSql, grace_s: float):
        self._db = db
        self.grace_s = grace_s

    def _owner_keys(self, owner: str, model: str, dims: int) -> np.ndarray:
        row = self._db.execute("SELECT keys FROM owner_keys WHERE owner=? AND model=? AND dims=?",
                               (owner, model, dims)).fetchone()
        return blob_keys(row[0] if row else b"")

    def _store_keys(self, owner: str, model: str, dims: int, keys: np.ndarray) -> None:
        if len(keys):
            self._db.execute(OWNER_KEYS_UPSERT, (owner, model, dims, keys.tobytes()))
        else:
            self._db.execute("DELETE FROM owner_keys WHERE owner=? AND model=? AND dims=?", (owner, model, dims))

    def reserve(self, owner: str, model: str, dims: int, keys: Iterable[bytes]) -> None:
        """Add refs from `owner` to `keys` (present or about to be embedded) without dropping any:
        from here on no other run prunes them, and a crash leaves them referenced."""
        wanted = key_array(keys)
        if contains(self._owner_keys(owner, model, dims), wanted).all():
            return  # an unchanged reindex takes no write lock here
        with self._db.write():
            self._store_keys(owner, model, dims, np.union1d(self._owner_keys(owner, model, dims), wanted))

    def set_refs(self, owner: str, model: str, dims: int, keys: Iterable[bytes]) -> int:
        """Make `keys` (in `model`, `dims`) exactly what `owner` uses; delete the vectors no owner
        uses any more, and old unreferenced ones. Returns the number of vectors deleted."""
        current = key_array(keys)
        if not self._refs_change(owner, model, dims, current) and not self._gc_due():
            return 0  # nothing to write: no write lock taken
        with self._db.write():
            gone: list[tuple[str, int, np.ndarray]] = []
            for m, d, blob in self._db.execute("SELECT model, dims, keys FROM owner_keys WHERE owner=?",
                                               (owner,)).fetchall():
                old = blob_keys(blob)
                if (m, d) == (model, dims):
                    gone.append((m, d, old[~contains(current, old)]))
                else:  # another model's keys: all of them go
                    gone.append((m, d, old))
                    self._store_keys(owner, m, d, old[:0])
            self._store_keys(owner, model, dims, current)
            pruned = sum(self._delete_unreferenced(m, d, doomed) for m, d, doomed in gone if len(doomed))
            pruned += self._collect_unreferenced()
        return pruned

    def _refs_change(self, owner: str, model: str, dims: int, current: np.ndarray) -> bool:
        spaces = self._db.execute("SELECT model, dims FROM owner_keys WHERE owner=?", (owner,)).fetchall()
        if any(space != (model, dims) for space in spaces):
            return True
        return not np.array_equal(self._owner_keys(owner, model, dims), current)

    def _delete_unreferenced(self, model: str, dims: int, keys: np.ndarray) -> int:
        """Delete the vectors of `keys` that no owner references (call inside a write)."""
        for (blob,) in self._db.execute("SELECT keys FROM owner_keys WHERE model=? AND dims=?", (model, dims)):
            keys = keys[~contains(blob_keys(blob), keys)]
            if not len(keys):
                return 0
        return self._db.delete_keys(model, dims, keys.tobytes())

    def drop_owner(self, owner: str) -> int:
        """Forget a repository (it was removed): its vectors nobody else uses are deleted."""
        return self.set_refs(owner, "", 0, [])

    def owners(self) -> dict[str, int]:
        """How many keys each owner references."""
        return dict(self._db.execute(f"SELECT owner, SUM(LENGTH(keys) / {KEY_BYTES}) FROM owner_keys GROUP BY owner"))

    def _gc_due(self) -> bool:
        last = self._db.execute("SELECT value FROM meta WHERE name='last_gc'").fetchone()
        return last is None or time.time() - float(last[0]) >= _GC_EVERY_S

    def _collect_unreferenced(self, force: bool = False) -> int:
        if not force and not self._gc_due():
            return 0
        now = time.time()
        self._db.execute(META_UPSERT, ("last_gc", now))
        old: dict[tuple[str, int], list[bytes]] = {}
        for model, dims, key in self._db.execute("SELECT model, dims, key FROM vectors WHERE added < ?",
                                                 (now - self.grace_s,)):
            old.setdefault((model, dims), []).append(key)
        return sum(self._delete_unreferenced(m, d, key_array(keys)) for (m, d), keys in old.items())

    def collect_unreferenced(self) -> int:
        """Delete unreferenced vectors older than the grace period now; returns how many."""
        with self._db.write():
            return self._collect_unreferenced(force=True)
