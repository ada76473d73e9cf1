"""How a file of ours is replaced without a reader ever seeing half of it, and read back
without trusting it. (Where those files live is the settings' answer: settings.py.)"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces `path` when the block ends without error, so a reader
    (another step, the sensor) never sees half a file; on error `path` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_pickles(path: Path | None, count: int = 1) -> list | None:
    """The first `count` objects pickled in `path` (a file of ours: a cache of work that can
    be redone), or None when it is missing, truncated or foreign: the caller recomputes."""
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            return [pickle.load(fh) for _ in range(count)]
    except Exception:  # OSError, EOFError, UnpicklingError, or whatever garbage unpickles into
        return None

