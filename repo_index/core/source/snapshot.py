"""What repo_files hands on: the files of a repository's source at one state."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

from .discovery import Discovery

FILE_COLUMNS = ["path", "language", "size_bytes", "sha256"]


@dataclass
class SourceFiles:
    repo: str
    root: str  # where the files are read: the clone or the registered folder
    commit: str  # "" when the source is not a git checkout
    tree: str  # fingerprint of the files' paths and contents
    files: pd.DataFrame  # FILE_COLUMNS, one row per discovered file


def tree_fingerprint(files: pd.DataFrame) -> str:
    """Identifies the indexed content when there is no commit (or the tree is dirty)."""
    digest = hashlib.sha256()
    for path, sha in zip(files["path"], files["sha256"]):
        digest.update(f"{path}\0{sha}\n".encode())
    return digest.hexdigest()[:16]


def source_files(repo: str, root: str, commit: str | None, found: Discovery) -> SourceFiles:
    files = pd.DataFrame([(f.path, f.language, f.size_bytes, f.sha256) for f in found.files], columns=FILE_COLUMNS)
    files = files.astype({"size_bytes": "int64"})
    return SourceFiles(repo, root, commit or "", tree_fingerprint(files), files)
