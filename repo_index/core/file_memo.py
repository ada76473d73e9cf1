"""What this process last wrote to or read from a file, kept while the file is unchanged.

Steps of one run that share a process (the in-process executor) hand large objects to each
other through files; the memo lets the next step take the object instead of reading and
checking it again. A file is unchanged while its identity (path, inode, size, modification
time) is: an atomic rewrite (a new inode) or any write is read afresh.
"""

from __future__ import annotations

from pathlib import Path


class FileMemo:
    """One file's last objects, by its identity. Callers never modify what they get."""

    def __init__(self) -> None:
        self._stamp: tuple | None = None
        self._objects: list | None = None

    @staticmethod
    def _stamp_of(path: Path) -> tuple | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return str(path), st.st_ino, st.st_size, st.st_mtime_ns

    def get(self, path: Path) -> list | None:
        """What `keep` left for `path`, if the file has not changed since; else None."""
        stamp = self._stamp_of(path)
        return self._objects if stamp is not None and stamp == self._stamp else None

    def keep(self, path: Path, objects: list | None) -> None:
        """Remember `objects` as what `path` holds now (None or empty: forget)."""
        self._stamp, self._objects = (self._stamp_of(path), objects) if objects else (None, None)
