"""Content-addressed store of embeddings: (model, dimensions, sha256 of embedded text).

One SQLite file shared by every repository and every step process (WAL, so readers never
block the writer; a busy timeout and `BEGIN IMMEDIATE`, so concurrent writers queue
instead of failing). Vectors are written as responses arrive, so a run killed midway
keeps every vector it already paid for. Each vector is stored once however many chunks
or repositories share its text.

`owner_keys` records which repository (owner) uses which vectors: one row per owner and
(model, dimensions), its keys as one sorted blob of 32-byte digests, searched in place
with numpy. A first run of a large repository references 100k+ keys: one blob is one
write of a few MB, where a row per key cost several microseconds each (~1 s per 160k
keys, twice per run). The rules that keep pruning safe for the steps that read a
repository's vectors back from this cache after `chunk_embeddings` (its IO manager checks
they are all here; `vector_collection` reads them in batches):

- A run first `reserve`s refs for every key it needs, before reading or embedding, so a
  concurrent run pruning its own old keys can never delete a vector this run is using;
  a run killed midway leaves its vectors referenced by its owner.
- After a successful run, `set_refs` makes the owner reference exactly its current keys
  (in its current model): vectors that no owner references any more are pruned at once.
  So every vector of every repository's latest materialization stays.
- Vectors written without an owner (library use, query vectors) are unreferenced: they
  are collected once they are older than `grace_days`.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .. import paths

SCHEMA_VERSION = 2
KEY_BYTES = 32  # sha256
PAGE_SIZE = 32768
# A rowid table for vectors: rows of several KB are what SQLite advises against in WITHOUT
# ROWID tables. `added` (unix time) dates unreferenced vectors for the grace period; the
# float32 blob comes last so key lookups never read it from overflow pages.
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, dims INTEGER NOT NULL, key BLOB NOT NULL, "
    "added REAL NOT NULL, vector BLOB NOT NULL, UNIQUE (model, dims, key))",
    "CREATE INDEX IF NOT EXISTS vectors_by_added ON vectors (added)",
    "CREATE TABLE IF NOT EXISTS owner_keys (owner TEXT NOT NULL, model TEXT NOT NULL, dims INTEGER NOT NULL, "
    "keys BLOB NOT NULL, UNIQUE (owner, model, dims))",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID",
]
# Keys per `IN (...)` lookup: fewer, larger queries are faster; SQLite before 3.32 allows
# only 999 parameters per statement.
_PARAMS_PER_QUERY = 10_000 if sqlite3.sqlite_version_info >= (3, 32) else 900
DEFAULT_GRACE_DAYS = 7.0
_GC_EVERY_S = 3600.0  # the unreferenced sweep scans the old end of the table: at most hourly


def default_cache_path() -> Path:
    """The cache every entry point shares: `<data dir>/embeddings.sqlite`."""
    return paths.data_dir() / "embeddings.sqlite"


def _chunks(items: list, size: int = _PARAMS_PER_QUERY) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class VectorCache:
    def __init__(self, path: Path | str | None = None, grace_days: float = DEFAULT_GRACE_DAYS):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.grace_s = grace_days * 86400
        # timeout = SQLite's busy timeout: a writer waits for another process's transaction.
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        # Only a new file takes it. A 1536-d vector is 6 KB: with 4 KB pages each one spans an
        # overflow chain of small pages; 32 KB pages write the same vectors in ~half the time
        # (CPU the event loop competes for) into a ~20% smaller file, and read as fast.
        self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        self._enable_wal()
        # In WAL mode NORMAL loses nothing on a process crash (only on power loss).
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Checkpoint every 32 MB of WAL rather than 4 MB: each checkpoint syncs the file, and
        # a first run writes ~6 KB per vector. A 64 MB page cache holds the key index of a few
        # hundred thousand vectors, which random keys otherwise read back page by page.
        page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        self._db.execute(f"PRAGMA wal_autocheckpoint={(32 << 20) // page_size}")
        self._db.execute("PRAGMA cache_size=-65536")
        self._migrate()

    # -- plumbing -----------------------------------------------------------

    def _enable_wal(self, timeout_s: float = 60) -> None:
        # Switching a new file to WAL needs an exclusive lock, and SQLite answers "database
        # is locked" at once (no busy handler) while another process opens it too: retry.
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _write(self):
        return _Transaction(self._db)

    def _version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        if self._version() >= SCHEMA_VERSION:
            return
        with self._write():
            if self._version() >= SCHEMA_VERSION:  # another process got there first
                return
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            columns = [r[1] for r in self._db.execute("PRAGMA table_info(vectors)")]
            legacy = bool(columns) and "added" not in columns
            if legacy:
                # Version 0 kept vectors in a WITHOUT ROWID table with no date: keep every
                # vector, dated 0, so the unreferenced ones go in the next sweep.
                self._db.execute("ALTER TABLE vectors RENAME TO vectors_v0")
            for statement in _SCHEMA:
                self._db.execute(statement)
            if legacy:
                self._db.execute("INSERT OR IGNORE INTO vectors (model, dims, key, added, vector) "
                                 "SELECT model, dims, key, 0, vector FROM vectors_v0")
                self._db.execute("DROP TABLE vectors_v0")
            if "refs" in tables:  # versions 0 and 1: a row per (owner, model, dims, key)
                spaces = self._db.execute("SELECT DISTINCT owner, model, dims FROM refs").fetchall()
                for owner, model, dims in spaces:
                    keys = [k for (k,) in self._db.execute(
                        "SELECT key FROM refs WHERE owner=? AND model=? AND dims=?", (owner, model, dims))]
                    self._store_keys(owner, model, dims, _key_array(keys))
                self._db.execute("DROP TABLE refs")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

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

    def get_many(self, model: str, dims: int, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among `keys` (read-only float32 views), by key."""
        return {key: np.frombuffer(blob, dtype="<f4") for key, blob in self._select("key, vector", model, dims, keys)}

    def present(self, model: str, dims: int, keys: Iterable[bytes]) -> set[bytes]:
        """Which of `keys` are cached. Reads only the key index (a covering index), never a vector."""
        return {key for (key,) in self._select("key", model, dims, set(keys))}

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

    def put_many(self, model: str, dims: int, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        """Store vectors, one transaction per call (one response). A key already present keeps
        its vector: the same text gives the same vector, and nothing is rewritten."""
        now = time.time()
        # sqlite3 binds any buffer as a BLOB: contiguous float32 rows go in without a copy.
        rows = [(model, dims, k, now, np.ascontiguousarray(v, dtype="<f4")) for k, v in items]
        with self._write():
            self._db.executemany(
                "INSERT OR IGNORE INTO vectors (model, dims, key, added, vector) VALUES (?, ?, ?, ?, ?)", rows)

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM vectors WHERE model=?", (model,)).fetchone()[0]

    # -- references ---------------------------------------------------------

    def _owner_keys(self, owner: str, model: str, dims: int) -> np.ndarray:
        row = self._db.execute("SELECT keys FROM owner_keys WHERE owner=? AND model=? AND dims=?",
                               (owner, model, dims)).fetchone()
        return _blob_keys(row[0] if row else b"")

    def _store_keys(self, owner: str, model: str, dims: int, keys: np.ndarray) -> None:
        if len(keys):
            self._db.execute("INSERT OR REPLACE INTO owner_keys VALUES (?, ?, ?, ?)",
                             (owner, model, dims, keys.tobytes()))
        else:
            self._db.execute("DELETE FROM owner_keys WHERE owner=? AND model=? AND dims=?", (owner, model, dims))

    def reserve(self, owner: str, model: str, dims: int, keys: Iterable[bytes]) -> None:
        """Add refs from `owner` to `keys` (present or about to be embedded) without dropping any:
        from here on no other run prunes them, and a crash leaves them referenced."""
        wanted = _key_array(keys)
        if _contains(self._owner_keys(owner, model, dims), wanted).all():
            return  # an unchanged reindex takes no write lock here
        with self._write():
            self._store_keys(owner, model, dims, np.union1d(self._owner_keys(owner, model, dims), wanted))

    def set_refs(self, owner: str, model: str, dims: int, keys: Iterable[bytes]) -> int:
        """Make `keys` (in `model`, `dims`) exactly what `owner` uses; delete the vectors no owner
        uses any more, and old unreferenced ones. Returns the number of vectors deleted."""
        current = _key_array(keys)
        if not self._refs_change(owner, model, dims, current) and not self._gc_due():
            return 0  # nothing to write: no write lock taken
        with self._write():
            gone: list[tuple[str, int, np.ndarray]] = []
            for m, d, blob in self._db.execute("SELECT model, dims, keys FROM owner_keys WHERE owner=?",
                                               (owner,)).fetchall():
                old = _blob_keys(blob)
                if (m, d) == (model, dims):
                    gone.append((m, d, old[~_contains(current, old)]))
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
            keys = keys[~_contains(_blob_keys(blob), keys)]
            if not len(keys):
                return 0
        raw = keys.tobytes()  # bytes of each key exactly (numpy's bytes_ would drop trailing NULs)
        cursor = self._db.executemany("DELETE FROM vectors WHERE model=? AND dims=? AND key=?",
                                      [(model, dims, raw[i:i + KEY_BYTES]) for i in range(0, len(raw), KEY_BYTES)])
        return cursor.rowcount

    def drop_owner(self, owner: str) -> int:
        """Forget a repository (it was removed): its vectors nobody else uses are deleted."""
        return self.set_refs(owner, "", 0, [])

    def owners(self) -> dict[str, int]:
        return dict(self._db.execute(f"SELECT owner, SUM(LENGTH(keys)) / {KEY_BYTES} FROM owner_keys GROUP BY owner"))

    def _gc_due(self) -> bool:
        last = self._db.execute("SELECT value FROM meta WHERE name='last_gc'").fetchone()
        return last is None or time.time() - float(last[0]) >= _GC_EVERY_S

    def _collect_unreferenced(self, force: bool = False) -> int:
        if not force and not self._gc_due():
            return 0
        now = time.time()
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_gc', ?)", (now,))
        old: dict[tuple[str, int], list[bytes]] = {}
        for model, dims, key in self._db.execute("SELECT model, dims, key FROM vectors WHERE added < ?",
                                                 (now - self.grace_s,)):
            old.setdefault((model, dims), []).append(key)
        return sum(self._delete_unreferenced(m, d, _key_array(keys)) for (m, d), keys in old.items())

    def collect_unreferenced(self) -> int:
        """Delete unreferenced vectors older than the grace period now; returns how many."""
        with self._write():
            return self._collect_unreferenced(force=True)


def _key_array(keys: Iterable[bytes]) -> np.ndarray:
    """Keys as a sorted array of distinct 32-byte strings (numpy compares them bytewise)."""
    keys = list(keys)
    raw = b"".join(keys)
    if len(raw) != KEY_BYTES * len(keys):
        raise ValueError(f"vector cache keys are {KEY_BYTES}-byte digests")
    return np.unique(np.frombuffer(raw, dtype=f"S{KEY_BYTES}"))


def _blob_keys(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=f"S{KEY_BYTES}")


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each of `keys`, whether it is in `sorted_keys`."""
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys


class BackgroundWriter:
    """Writes vectors to a cache from one thread, in arrival order, so the caller (the event
    loop) never waits for SQLite, which releases the GIL while it writes.

    When answers arrive faster than the disk takes them, everything queued meanwhile goes
    in one transaction: each commit rewrites every index page it touched, and random sha256
    keys touch a different page per key, so many small commits cost several times more
    than a few large ones. `close()` waits until everything queued is on disk (also when
    the run failed) and re-raises a write error.
    """

    _DONE = object()

    def __init__(self, cache: VectorCache, model: str, dims: int, max_bytes: int = 64 << 20):
        # The cap is in bytes, not rows: small vectors (48-d) arrive ~30x more rows per
        # second than 1536-d ones, and a cap of a few thousand rows made the writer commit
        # so often that it fell behind the network.
        self.cache, self.model, self.dims = cache, model, dims
        self.max_rows = max(1, max_bytes // (4 * dims))
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vector-cache-writer", daemon=True)
        self._thread.start()

    def put(self, items: list[tuple[bytes, np.ndarray]]) -> None:
        self._queue.put(items)

    def close(self, raise_error: bool = True) -> None:
        self._queue.put(self._DONE)
        self._thread.join()
        if raise_error and self._error is not None:
            raise self._error

    def _run(self) -> None:
        done = False
        while not done:
            rows: list[tuple[bytes, np.ndarray]] = []
            item = self._queue.get()
            while True:
                if item is self._DONE:
                    done = True
                else:
                    rows.extend(item)
                if done or len(rows) >= self.max_rows or self._queue.empty():
                    break
                item = self._queue.get()
            if rows and self._error is None:
                try:
                    self.cache.put_many(self.model, self.dims, rows)
                except BaseException as exc:  # reported by close(); later batches are dropped
                    self._error = exc


class _Transaction:
    """`BEGIN IMMEDIATE` takes the write lock up front, so a second writer waits out the busy
    timeout instead of failing on a read-to-write upgrade (SQLITE_BUSY without retry)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *exc) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
