"""The cache's SQLite file: connection settings, tables, migrations, write transactions.

One file shared by every repository and every step process: WAL, so readers never block
the writer; a busy timeout and `BEGIN IMMEDIATE`, so concurrent writers queue instead of
failing.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from .keys import key_array

SCHEMA_VERSION = 2
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


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the cache at `path`, set up for it; the schema is not touched (`migrate`)."""
    # timeout = SQLite's busy timeout: a writer waits for another process's transaction.
    db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    try:
        _configure(db)
    except BaseException:
        db.close()
        raise
    return db


def _configure(db: sqlite3.Connection) -> None:
    # Only a new file takes it. A 1536-d vector is 6 KB: with 4 KB pages each one spans an
    # overflow chain of small pages; 32 KB pages write the same vectors in ~half the time
    # (CPU the event loop competes for) into a ~20% smaller file, and read as fast.
    db.execute(f"PRAGMA page_size={PAGE_SIZE}")
    _enable_wal(db)
    # In WAL mode NORMAL loses nothing on a process crash (only on power loss).
    db.execute("PRAGMA synchronous=NORMAL")
    # Checkpoint every 32 MB of WAL rather than 4 MB: each checkpoint syncs the file, and
    # a first run writes ~6 KB per vector. A 64 MB page cache holds the key index of a few
    # hundred thousand vectors, which random keys otherwise read back page by page.
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.execute(f"PRAGMA wal_autocheckpoint={(32 << 20) // page_size}")
    db.execute("PRAGMA cache_size=-65536")


def _enable_wal(db: sqlite3.Connection, timeout_s: float = 60) -> None:
    # Switching a new file to WAL needs an exclusive lock, and SQLite answers "database
    # is locked" at once (no busy handler) while another process opens it too: retry.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class WriteTransaction:
    """`BEGIN IMMEDIATE` takes the write lock up front, so a second writer waits out the busy
    timeout instead of failing on a read-to-write upgrade (SQLITE_BUSY without retry)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *exc) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite3.Connection) -> None:
    """Create the tables, or bring a file of an older version to `SCHEMA_VERSION`."""
    if _version(db) >= SCHEMA_VERSION:
        return
    with WriteTransaction(db):
        if _version(db) >= SCHEMA_VERSION:  # another process got there first
            return
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        columns = [r[1] for r in db.execute("PRAGMA table_info(vectors)")]
        legacy = bool(columns) and "added" not in columns
        if legacy:
            # Version 0 kept vectors in a WITHOUT ROWID table with no date: keep every
            # vector, dated 0, so the unreferenced ones go in the next sweep.
            db.execute("ALTER TABLE vectors RENAME TO vectors_v0")
        for statement in _SCHEMA:
            db.execute(statement)
        if legacy:
            db.execute("INSERT OR IGNORE INTO vectors (model, dims, key, added, vector) "
                       "SELECT model, dims, key, 0, vector FROM vectors_v0")
            db.execute("DROP TABLE vectors_v0")
        if "refs" in tables:  # versions 0 and 1: a row per (owner, model, dims, key)
            spaces = db.execute("SELECT DISTINCT owner, model, dims FROM refs").fetchall()
            for owner, model, dims in spaces:  # each has a key at least: one owner_keys row
                keys = [k for (k,) in db.execute(
                    "SELECT key FROM refs WHERE owner=? AND model=? AND dims=?", (owner, model, dims))]
                db.execute("INSERT OR REPLACE INTO owner_keys VALUES (?, ?, ?, ?)",
                           (owner, model, dims, key_array(keys).tobytes()))
            db.execute("DROP TABLE refs")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
