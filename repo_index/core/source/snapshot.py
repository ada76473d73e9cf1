"""What repo_files hands on: the files of a repository's source at one state."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import stat_cache
from .discovery import DEFAULT_MAX_FILE_BYTES, Discovery, discover
from .git import SourceError, current_head
from .registry import RepoSpec, resolve_local_source

FILE_COLUMNS = ["path", "language", "size_bytes", "sha256"]


@dataclass
class SourceFiles:
    repo: str
    root: str  # where the files are read: the clone or the registered folder
    commit: str  # "" when the source is not a git checkout
    tree: str  # fingerprint of the files' paths and contents
    files: pd.DataFrame  # FILE_COLUMNS, one row per discovered file
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES  # discovery's bound, which chunking's reads keep


def tree_fingerprint(files: pd.DataFrame) -> str:
    """Identifies the indexed content when there is no commit (or the tree is dirty)."""
    digest = hashlib.sha256()
    for path, sha in zip(files["path"], files["sha256"]):
        digest.update(f"{path}\0{sha}\n".encode())
    return digest.hexdigest()[:16]


def source_files(repo: str, root: str, commit: str | None, found: Discovery) -> SourceFiles:
    files = pd.DataFrame([(f.path, f.language, f.size_bytes, f.sha256) for f in found.files], columns=FILE_COLUMNS)
    files = files.astype({"size_bytes": "int64"})
    return SourceFiles(repo, root, commit or "", tree_fingerprint(files), files, found.max_file_bytes)


def version_of(commit: str | None, tree: str) -> str:
    """What the index records as the state it holds: the commit, else `tree:` + fingerprint."""
    return commit or f"tree:{tree}"


def current_version(spec: RepoSpec, registry_file: Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                    stats_file: Path | None = None) -> str | None:
    """The state of the source now, comparable with what the index recorded: a commit (the
    remote's, without fetching, or a local git root's), else the content fingerprint of a
    local folder (its files discovered and hashed as repo_files does, with the bound it
    used; with `stats_file`, files whose stamps have not changed since the last call are
    not read again). None when a pinned commit cannot be asked of the remote."""
    if spec.is_git_url or spec.ref:
        return current_head(spec, registry_file)
    root = resolve_local_source(spec, registry_file)
    if not root.is_dir():
        raise SourceError(f"path {str(root)!r} does not exist or is not a directory")
    commit = current_head(spec, registry_file)
    if commit:  # a git root is known by its HEAD: no need to read and hash its files
        return commit
    found = discover_stamped(root, spec, max_file_bytes, stats_file)
    return version_of(None, source_files(spec.name, str(root), None, found).tree)


def discover_stamped(root: Path, spec: RepoSpec, max_file_bytes: int, stats_file: Path | None) -> Discovery:
    """`spec`'s files under `root` (discovery), reading only those whose stamps changed since
    they were last hashed when `stats_file` (the repository's stat cache) is given."""
    stats = stat_cache.load(stats_file) if stats_file else None
    found = discover(root, spec.include, spec.exclude, max_file_bytes, stats)
    if stats_file:
        stat_cache.save(stats_file, stats)
    return found
