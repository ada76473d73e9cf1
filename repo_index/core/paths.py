"""Where the project keeps things (project root, data folder, registry file), and how a
file there is replaced without a reader ever seeing half of it.

Every entry point (Makefile, CLI, `dagster dev`, step processes) resolves the same
locations, so the UI, the CLI and the daemon share one instance and one data folder.
Environment variables override each location (tests point them at temp dirs).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

HOME_ENV = "REPO_INDEX_HOME"
DATA_ENV = "REPO_INDEX_DATA_DIR"
REGISTRY_ENV = "REPO_INDEX_REGISTRY"


def project_root() -> Path:
    """The folder holding dagster.yaml: $REPO_INDEX_HOME, the source checkout, or the cwd."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "dagster.yaml").is_file():
        return checkout
    return Path.cwd()


def data_dir() -> Path:
    """Git-ignored folder for Dagster storage, Chroma, the embedding cache and clones."""
    path = Path(os.environ.get(DATA_ENV) or project_root() / ".data")
    path.mkdir(parents=True, exist_ok=True)
    return path


def registry_path() -> Path:
    return Path(os.environ.get(REGISTRY_ENV) or project_root() / "repositories.yaml")


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
