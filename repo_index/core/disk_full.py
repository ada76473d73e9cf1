"""Whether a failed write failed because the disk is full, and a message that says so.

Python and SQLite say it with an errno (ENOSPC, EFBIG past a file size limit, EDQUOT) or
SQLITE_FULL. Embedded Chroma does not: its Rust core turns the error into text such as
`Error in compaction: Failed to apply logs to the hnsw segment writer`, with no errno and
no cause. So when the error itself does not say, the free space of the folders the write
went to decides: a disk left with almost nothing free is why it failed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_SQLITE_FULL = 13
_FULL_TEXTS = ("no space left on device", "database or disk is full", "disk quota exceeded", "file too large")
# Below this much free space a write that failed is taken to have failed for want of space.
# The writes that fail are large (a collection's index files, a WAL of vectors): a disk
# with a few MB left is full for them.
LOW_SPACE_BYTES = 16 << 20


class DiskFull(RuntimeError):
    """A write failed because its disk is full; the message names the disk and what to do."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def free_bytes(folder: Path | str) -> int | None:
    """Free space (for an ordinary user) on the disk holding `folder` or its nearest existing parent."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def disk_full_reason(exc: BaseException, folders: Iterable[Path | str] = ()) -> str | None:
    """Why `exc` is a full disk ("No space left on device", "<folder>: 0.2 MB free"), or None."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
            return os.strerror(e.errno)
        if isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorcode", None) == _SQLITE_FULL:
            return "database or disk is full"
        text = str(e).lower()
        for phrase in _FULL_TEXTS:
            if phrase in text:
                return phrase
    for folder in folders:
        free = free_bytes(folder)
        if free is not None and free < LOW_SPACE_BYTES:
            return f"{free / 1e6:.1f} MB free on the disk holding {folder}"
    return None


@contextlib.contextmanager
def says_disk_full(what: str, folders: Iterable[Path | str], then: str = "re-run") -> Iterator[None]:
    """Re-raise an error of the block that a full disk caused as DiskFull, saying so first."""
    folders = [f for f in folders if f]
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        reason = disk_full_reason(exc, folders)
        if reason is None:
            raise
        raise DiskFull(f"disk full while {what} ({reason}). Free space on that disk, then {then}. "
                       f"The error: {type(exc).__name__}: {exc}") from exc
