"""Read a file of an untrusted tree as it is now, never more than a bound, never through a
symlink, never blocking on a FIFO.

Chunking reads a file minutes after discovery looked at it (in another process, maybe on
another machine): by then it may have grown past `max_file_bytes`, been replaced by a
FIFO, or by a symlink (itself or a folder on its way) to a file outside the tree. So the
checks discovery made are made again on what is actually opened: each path component is
opened without following a symlink, relative to the one before (no swap between a check
and the open can redirect it), and the opened descriptor is `fstat`ed for its type and
size before anything is read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class FileSkipped(Exception):
    """The file is not read; `reason` is one of discovery's skip reasons."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


def symlink_reason(path: Path, root: Path) -> str:
    # realpath never raises: a loop or a dangling link resolves to a path that does not exist.
    target = Path(os.path.realpath(path))
    if not target.exists():
        return "broken_symlink"
    if not target.is_relative_to(root):
        return "symlink_outside_tree"
    return "symlink"


_KINDS = {"p": "a FIFO", "s": "a socket", "c": "a device", "b": "a device", "d": "a folder"}


def read_bounded(fd: int, max_bytes: int) -> bytes:
    """The content of the regular file open at `fd`, if it has at most `max_bytes`."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # a FIFO, socket or device: reading may block or never end
        raise FileSkipped("not_regular_file", f"is {_KINDS.get(stat.filemode(st.st_mode)[0], 'not a file')} now")
    if st.st_size > max_bytes:  # known from the inode: the content is never read
        raise FileSkipped("too_large", f"{st.st_size} bytes > {max_bytes}")
    with open(fd, "rb", closefd=False) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew since fstat
        raise FileSkipped("too_large", f"more than {max_bytes} bytes")
    return data


_NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def read_beneath(root: Path, rel: str, max_bytes: int) -> bytes:
    """The bytes of the regular file `rel` (POSIX, relative) under `root`, at most
    `max_bytes`; FileSkipped with the reason otherwise."""
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise FileSkipped("unreadable", "not a path inside the tree")
    fds: list[int] = []
    try:
        fds.append(os.open(root, _NO_FOLLOW | os.O_DIRECTORY))
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = _NO_FOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)  # O_NONBLOCK: a FIFO opens at once
            try:
                fds.append(os.open(part, flags, dir_fd=fds[-1]))
            except OSError as exc:
                # ELOOP: the component is a symlink; ENOTDIR for a folder swapped for one, too
                link = root.joinpath(*parts[:i + 1])
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(link):
                    raise FileSkipped(symlink_reason(link, Path(os.path.realpath(root))),
                                      "became a symlink after discovery") from None
                raise
        return read_bounded(fds[-1], max_bytes)
    except OSError as exc:
        raise FileSkipped("unreadable", str(exc)) from None
    finally:
        for fd in fds:
            os.close(fd)
