"""A damaged cache file (truncated, overwritten, not SQLite) is moved aside and replaced by
an empty cache, so every repository's runs go on; the vectors it held are embedded again.

Nothing of the old file is read into the new one: a damaged file cannot say which of its
vectors are sound, and a wrong vector would be served silently ever after. The file is
kept beside the cache (`embeddings.sqlite.corrupt-<time>`) for whoever wants to look.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

_MAGIC = b"SQLite format 3\x00"
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
# SQLite's own files beside the database: a write-ahead log left next to a new, empty file
# would be replayed into it (its frames are checked against the log's header, not the database).
_COMPANIONS = ("-wal", "-shm", "-journal")


def is_damage(exc: BaseException) -> bool:
    """Whether SQLite raised `exc` for the file's content (corrupt, not a database), not for
    a lock, an I/O error, a full disk or a misuse: only those make a file suspect."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def header_problem(path: Path) -> str | None:
    """Why `path` cannot be a whole SQLite database, judged from its 100-byte header alone
    (no page is read), or None. A missing or empty file is a new cache, not a damaged one."""
    try:
        size = path.stat().st_size
        if size == 0:
            return None
        with open(path, "rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        return None
    if len(head) < 100 or not head.startswith(_MAGIC):
        return "not a SQLite database"
    page_size = struct.unpack(">H", head[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    (changes, pages), (valid_for,) = struct.unpack(">II", head[24:32]), struct.unpack(">I", head[92:96])
    # The header's page count is authoritative when it was written with the last change
    # (`valid_for`); a file shorter than that lost its end.
    if changes == valid_for and pages * page_size > size:
        return f"truncated: {size} of its {pages * page_size} bytes"
    return None


def open_or_replace(path: Path, open_db: Callable[[Path], sqlite3.Connection]) -> sqlite3.Connection:
    """`open_db(path)`, after moving a damaged file at `path` aside (see module doc).

    A bad header, an error SQLite raises for the file's content on opening (`file is not a
    database`, `database disk image is malformed`) or while in use (`reports_damage`)
    makes the file suspect; it is
    moved aside only if SQLite confirms it, under a lock, with `PRAGMA quick_check` (a
    header read mid-checkpoint by another process can look truncated for a moment). Any
    other error (locked, I/O, disk full) is raised as it is: the file may be sound.
    """
    suspect = header_problem(path) or _marked(path)
    if suspect is None:
        try:
            return open_db(path)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
    # One process moves it aside: the others wait here, then find the new file sound.
    with FileLock(str(path) + ".repair.lock"):
        problem = _checked_problem(path, open_db)
        if problem is not None:
            aside = move_aside(path)
            log.warning(f"the embedding cache {path} is damaged ({problem}): moved aside to {aside.name}; a new "
                        "cache is started and the vectors it held are embedded again")
        _marker(path).unlink(missing_ok=True)
    return open_db(path)


class CacheDamaged(RuntimeError):
    """SQLite found the cache file damaged while it was in use; the next opening checks it."""


def reports_damage(path: Path, exc: sqlite3.DatabaseError) -> CacheDamaged:
    """For a damage error (`is_damage`) SQLite raised reading or writing the open cache at
    `path`: mark the file, so the next opening checks it and moves it aside if
    damaged (a check of the whole file at every opening would read gigabytes per step),
    and the error that says so."""
    _marker(path).write_text(f"{exc}\n")
    return CacheDamaged(f"the embedding cache {path} is damaged ({exc}): re-run, the next run checks it and moves "
                        "it aside if SQLite confirms the damage")


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".suspect")


def _marked(path: Path) -> str | None:
    try:
        return _marker(path).read_text().strip() or "marked suspect"
    except FileNotFoundError:
        return None


def _checked_problem(path: Path, open_db: Callable[[Path], sqlite3.Connection]) -> str | None:
    """What SQLite finds wrong with the file: an error opening it, or `PRAGMA quick_check`'s first finding."""
    try:
        db = open_db(path)
        try:
            found = [row[0] for row in db.execute("PRAGMA quick_check")]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return str(exc)
    return None if found == ["ok"] else f"{found[0]}" + (f" and {len(found) - 1} more" if len(found) > 1 else "")


def move_aside(path: Path) -> Path:
    """Rename `path` and SQLite's files beside it to `<name>.corrupt-<UTC time>`; returns the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in _COMPANIONS:
        if os.path.exists(str(path) + suffix):
            os.replace(str(path) + suffix, str(aside) + suffix)
    os.replace(path, aside)
    return aside
