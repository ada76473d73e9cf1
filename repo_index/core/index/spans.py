"""The ids and line spans of a collection, left by each sync for the next one.

What a sync knows of the collection it needs only ids and line spans for; reading them
back from Chroma costs ~0.1 ms a record (most of an unchanged nightly sync of a large
repository). So each sync leaves them in a local file stamped with a random token that it
also writes into the collection's metadata, and clears that token before it changes any
record: the next sync trusts the file only when the tokens (and the record count) agree,
so a crashed sync, another machine's sync or a recreated collection all fall back to
reading Chroma. The file also lists the paths the collection holds, for search's `--path`.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from ..atomic_files import atomic_writer, load_pickles
from .client import ChromaSettings, pages

SYNC_TOKEN = "repo_index_sync"  # collection metadata key: the token of the spans file in step

Spans = dict[str, tuple]  # chunk id -> (start_line, end_line)


def spans_path(settings: ChromaSettings, collection: str) -> Path:
    """Where a sync leaves the line spans of `collection` for the next one."""
    return settings.spans_dir() / f"{collection}.pkl"


def read_spans(collection) -> Spans:
    """id -> (start_line, end_line) read from Chroma: all a sync needs of a record, at a
    fraction of the memory of its whole metadata."""
    spans = {}
    for page in pages(collection, ["metadatas"]):
        for cid, meta in zip(page["ids"], page["metadatas"]):
            meta = meta or {}
            spans[cid] = (meta.get("start_line"), meta.get("end_line"))
    return spans


def _saved(path: Path | None, token: str | None, count: int) -> dict | None:
    """What `path` holds if it was saved under `token` for `count` records, else None."""
    loaded = load_pickles(path) if token else None
    saved = loaded[0] if loaded else None
    if not isinstance(saved, dict) or saved.get("token") != token:
        return None
    spans = saved.get("spans")
    return saved if isinstance(spans, dict) and len(spans) == count else None


def saved_spans(path: Path | None, token: str | None, count: int) -> Spans | None:
    """The spans in `path` if they were saved under `token` for `count` records, else None
    (then read Chroma instead)."""
    saved = _saved(path, token, count)
    return saved["spans"] if saved else None


def saved_paths(path: Path | None, token: str | None, count: int) -> list[str] | None:
    """Every path the collection holds, sorted, if `path` was saved under `token` for `count`
    records (and by a sync that listed them), else None."""
    paths = (_saved(path, token, count) or {}).get("paths")
    return paths if isinstance(paths, list) else None


def save_spans(path: Path, token: str, spans: Spans, paths: list[str] | None = None) -> None:
    with atomic_writer(path) as f:
        pickle.dump({"token": token, "spans": spans, "paths": paths}, f, protocol=pickle.HIGHEST_PROTOCOL)
