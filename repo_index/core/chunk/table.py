"""The stored chunk table of each repository, and what of it a reindex can reuse.

A reindex re-chunks only the files whose content changed: every row of the chunk table
carries `file_sha256`, the sha256 of the file content it was cut from, and a file whose
current sha256 (from discovery) matches keeps its rows. Reuse also requires the same
chunking parameters: `max_tokens`, the token encoding, and the chunker's fingerprint (a
hash of the code and packages that decide the output), so a new chunker version or
budget re-chunks everything without anyone remembering to bump a version.

Files never reused: those whose text had secrets redacted (their rows carry an empty
`file_sha256`, so the redaction counts stay exact run after run), files that failed, and
files that produced no chunks. They are simply chunked again.

One file per repository, written atomically: a small pickled header (parameters and the
reusable files' sha256) followed by the pickled table, so planning reads the header
without loading the table.
"""

from __future__ import annotations

import hashlib
import pickle
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import pandas as pd

from .. import paths

_FORMAT = 1


@lru_cache(maxsize=1)
def chunker_fingerprint() -> str:
    """Hash of everything that decides a file's chunks: this package's chunking code and
    the versions of the grammar and tokenizer packages."""
    from ..source import discovery, secrets
    from . import chunker, languages, tokens

    digest = hashlib.sha256(str(_FORMAT).encode())
    for module in (chunker, discovery, languages, secrets, tokens):
        digest.update(Path(module.__file__).read_bytes())
    for package in ("tree-sitter", "tree-sitter-language-pack", "tree-sitter-markdown", "tiktoken"):
        try:
            digest.update(f"{package}={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(package.encode())
    return digest.hexdigest()[:16]


def chunk_params(max_tokens: int, encoding: str) -> dict:
    return {"max_tokens": int(max_tokens), "encoding": encoding, "chunker": chunker_fingerprint()}


def table_path(repo: str) -> Path:
    return paths.data_dir() / "code_chunks" / f"{repo}.pkl"


def save_table(path: Path, table: pd.DataFrame, params: dict) -> None:
    """Write the header, then the table; readers never see a half-written file."""
    reusable = table.loc[table["file_sha256"] != "", ["path", "file_sha256"]].drop_duplicates("path")
    header = {"params": params, "files": dict(zip(reusable["path"], reusable["file_sha256"]))}
    with paths.atomic_writer(path) as fh:
        pickle.dump(header, fh, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(table, fh, protocol=pickle.HIGHEST_PROTOCOL)


def load_header(path: Path) -> dict | None:
    """The stored header, or None when there is no readable table (nothing to reuse)."""
    loaded = paths.load_pickles(path)
    return loaded[0] if loaded and isinstance(loaded[0], dict) else None


def load_table(path: Path) -> tuple[dict, pd.DataFrame]:
    with open(path, "rb") as fh:
        header = pickle.load(fh)
        return header, pickle.load(fh)


def reusable_files(files: pd.DataFrame, header: dict | None, params: dict) -> set[str]:
    """Paths among `files` (columns path, sha256) whose stored chunks are still current."""
    if not header or header.get("params") != params:
        return set()
    stored = header["files"]
    return {path for path, sha in zip(files["path"], files["sha256"]) if stored.get(path) == sha}


def reused_rows(path: Path, files: pd.DataFrame, params: dict) -> pd.DataFrame | None:
    """The stored rows of `files` (path, sha256) whose content and parameters are unchanged,
    or None when nothing usable is stored."""
    loaded = paths.load_pickles(path, 2)
    if not loaded or not isinstance(loaded[0], dict):
        return None
    header, table = loaded
    if header.get("params") != params:
        return None
    wanted = dict(zip(files["path"], files["sha256"]))
    keep = table["file_sha256"].to_numpy() == table["path"].map(wanted).to_numpy()
    return table.loc[keep].reset_index(drop=True)
