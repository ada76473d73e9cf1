"""What a local folder's files held when last hashed, keyed by what `lstat` says of them,
so checking an unchanged folder for changes (the source-change sensor, `status`, every
tick) reads no file.

A file is taken as unchanged when its size, mtime, ctime and inode all match and its
mtime was already in the past when it was hashed: an edit within the same clock tick as
the hashing could otherwise keep the old stamps (git's "racy" entries), and `touch` can set
an mtime back but never a ctime. The cache is ours and disposable: missing or damaged, the
folder is simply read in full.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic_files import atomic_writer, load_pickles

RACY_MARGIN_NS = 2_000_000_000  # coarse file-system clocks (2 s on FAT, 1 s on some)
_FORMAT = "repo_index.stat_cache.v1"

Stamp = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode


def stamp(st: os.stat_result) -> Stamp:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


@dataclass
class StatCache:
    """rel path -> (stamp, outcome): a FileRecord, or the skip reason its bytes gave."""
    taken_ns: int = field(default_factory=time.time_ns)
    entries: dict[str, tuple[Stamp, object]] = field(default_factory=dict)
    previous: StatCache | None = None  # what the last hashing found, consulted by `known`

    def known(self, rel: str, st: os.stat_result):
        """The outcome recorded for `rel` if the file is as it was then, else None."""
        if self.previous is None:
            return None
        hit = self.previous.entries.get(rel)
        now = stamp(st)
        if hit is None or hit[0] != now or now[1] >= self.previous.taken_ns - RACY_MARGIN_NS:
            return None
        return hit[1]

    def record(self, rel: str, st: os.stat_result, outcome) -> None:
        self.entries[rel] = (stamp(st), outcome)


def stats_path(directory: Path, repo: str) -> Path:
    return directory / f"{repo}.stats"


def load(path: Path) -> StatCache:
    """A fresh cache to fill, remembering what `path` held (if anything usable)."""
    found = load_pickles(path, 2)
    previous = found[1] if found and found[0] == _FORMAT and isinstance(found[1], StatCache) else None
    return StatCache(previous=previous)


def save(path: Path, cache: StatCache) -> None:
    with atomic_writer(path) as fh:
        pickle.dump(_FORMAT, fh)
        pickle.dump(StatCache(cache.taken_ns, cache.entries), fh)
