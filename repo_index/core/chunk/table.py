"""The stored chunk table of each repository, and what of it a reindex can reuse.

A reindex re-chunks only the files whose content changed: every row of the chunk table
carries `file_sha256`, the sha256 of the file content it was cut from, and a file whose
current sha256 (from discovery) matches keeps its rows. Reuse also requires the same
chunking parameters: `max_tokens`, the token encoding, and the chunker's fingerprint (a
hash of the code and packages that decide the output), so a new chunker version or
budget re-chunks everything without anyone remembering to bump a version.

Files never reused: files that failed, and files that produced no chunks (their rows carry
no `file_sha256`). They are simply chunked again. A file whose text had secrets redacted is
reused like any other: the header keeps how many of each kind it had, which the run that
reuses it counts again, so the redaction counts stay exact run after run (re-chunking those
files each run cost 0.5 s of an unchanged reindex at 116 k chunks).

One file per repository (`ChunkStore`), reached from Dagster through a resource.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import pandas as pd

from ..atomic_files import atomic_writer, load_pickles
from ..file_memo import FileMemo
from ..source.snapshot import version_of

_FORMAT = 1


@lru_cache(maxsize=1)
def chunker_fingerprint() -> str:
    """Hash of everything that decides a file's chunks: this package's chunking code, the
    source modules and secret rules that decide the text, and the versions of the grammar,
    tokenizer and regex packages."""
    from ..source import content, discovery, secrets, secret_rules

    digest = hashlib.sha256(str(_FORMAT).encode())
    # Every module of this package but storage and orchestration, and every file of the
    # secret rules (code and rule files), by listing, so a new chunking module or rule
    # file is hashed without anyone remembering to add it here.
    folder = Path(__file__).parent
    chunking = sorted(p for p in folder.glob("*.py") if p.name not in ("table.py", "repository.py"))
    rules = sorted(p for p in Path(secret_rules.__file__).parent.iterdir() if p.is_file())
    for path in (*chunking, *(Path(m.__file__) for m in (content, discovery, secrets)), *rules):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for package in ("tree-sitter", "tree-sitter-language-pack", "tree-sitter-markdown", "tiktoken", "google-re2"):
        try:
            digest.update(f"{package}={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(package.encode())
    return digest.hexdigest()[:16]


def chunk_params(max_tokens: int, encoding: str) -> dict:
    return {"max_tokens": int(max_tokens), "encoding": encoding, "chunker": chunker_fingerprint()}


@dataclass
class ChunkTable:
    """What code_chunks hands on: a repository's chunks at one state of its source, and the
    parameters they were cut with (what the next run's reuse compares)."""

    repo: str
    commit: str  # "" when the source is not a git checkout
    tree: str  # fingerprint of the files' paths and contents
    params: dict
    chunks: pd.DataFrame
    # path -> secret kind -> occurrences redacted, for the table's files that had any
    redactions: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """What the index records as indexed (source.snapshot.version_of)."""
        return version_of(self.commit, self.tree)


# The table this process last wrote or read: a run whose steps share a process (the
# in-process executor) reads a large repository's table once, not in each of three steps
# (~0.3 s each at 116 k chunks). Callers never modify the frame they get.
_LAST_LOADED = FileMemo()


class ChunkStore:
    """The stored chunk table of each repository: one file per repository under `folder`,
    written atomically, a small pickled header (parameters, the reusable files' sha256 and
    the source state) followed by the pickled table, so planning reads the header without
    loading the table."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, repo: str) -> Path:
        return self.folder / f"{repo}.pkl"

    def save(self, table: ChunkTable) -> Path:
        """Write the header, then the table; readers never see a half-written file. A table
        equal to the one this process last read from the file is not written again."""
        chunks = table.chunks
        reusable = chunks.loc[chunks["file_sha256"] != "", ["path", "file_sha256"]].drop_duplicates("path")
        header = {"params": table.params, "files": dict(zip(reusable["path"], reusable["file_sha256"])),
                  "repo": table.repo, "commit": table.commit, "tree": table.tree, "redactions": table.redactions}
        path = self.path(table.repo)
        held = _LAST_LOADED.get(path)
        if held and held[0] == header and held[1].equals(chunks):
            return path  # an unchanged reindex: the file holds this table already (200 MB at 116 k chunks)
        with atomic_writer(path) as fh:
            pickle.dump(header, fh, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.dump(chunks, fh, protocol=pickle.HIGHEST_PROTOCOL)
        _LAST_LOADED.keep(path, [header, chunks])  # the later steps of a run in this process read it from here
        return path

    def _load(self, repo: str) -> list | None:
        path = self.path(repo)
        loaded = _LAST_LOADED.get(path)
        if loaded is None:
            loaded = load_pickles(path, 2)
            _LAST_LOADED.keep(path, loaded)
        return loaded

    def load(self, repo: str) -> ChunkTable:
        """The stored table; raises LookupError when there is none (or it is unreadable)."""
        loaded = self._load(repo)
        if not loaded or not isinstance(loaded[0], dict) or not isinstance(loaded[1], pd.DataFrame):
            raise LookupError(f"no stored code_chunks for {repo!r} at {self.path(repo)}")
        header, chunks = loaded
        return ChunkTable(header.get("repo", repo), header.get("commit", ""), header.get("tree", ""),
                          header.get("params", {}), chunks, header.get("redactions", {}))

    def header(self, repo: str) -> dict | None:
        """The stored header, or None when there is no readable table (nothing to reuse)."""
        loaded = _LAST_LOADED.get(self.path(repo)) or load_pickles(self.path(repo))
        return loaded[0] if loaded and isinstance(loaded[0], dict) else None

    def remove(self, repo: str) -> None:
        self.path(repo).unlink(missing_ok=True)

    def reused_rows(self, repo: str, files: pd.DataFrame, params: dict) -> pd.DataFrame | None:
        """The stored rows of `files` (path, sha256) whose content and parameters are unchanged,
        or None when nothing usable is stored."""
        loaded = self._load(repo)
        if not loaded or not isinstance(loaded[0], dict):
            return None
        header, table = loaded
        if header.get("params") != params:
            return None
        wanted = dict(zip(files["path"], files["sha256"]))
        keep = table["file_sha256"].to_numpy() == table["path"].map(wanted).to_numpy()
        return table.loc[keep].reset_index(drop=True)


def reusable_files(files: pd.DataFrame, header: dict | None, params: dict) -> set[str]:
    """Paths among `files` (columns path, sha256) whose stored chunks are still current."""
    if not header or header.get("params") != params:
        return set()
    stored = header["files"]
    return {path for path, sha in zip(files["path"], files["sha256"]) if stored.get(path) == sha}
