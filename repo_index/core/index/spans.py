"""The ids of a collection, left by each sync for the next one.

What a sync needs of the collection it writes is its ids (a record's lines live in the
lexical index); reading them back from Chroma costs seconds for a large repository (most of
an unchanged nightly sync). So each sync leaves them in a local file stamped with a random
token that it also writes into the collection's metadata, and clears that token before it
changes any record: the next sync trusts the file only when the tokens (and the record
count) agree, so a crashed sync, another machine's sync or a recreated collection all fall
back to reading Chroma. The file also lists the paths the collection holds, for search's
`--path`. (Files of older versions, which held line spans, count as absent.)
"""

from __future__ import annotations

import pickle
from pathlib import Path

from ..atomic_files import atomic_writer, load_pickles
from .client import ChromaSettings, pages

SYNC_TOKEN = "repo_index_sync"  # collection metadata key: the token of the ids file in step


def spans_path(settings: ChromaSettings, collection: str) -> Path:
    """Where a sync leaves the ids of `collection` for the next one."""
    return settings.spans_dir() / f"{collection}.pkl"


def read_ids(collection) -> set[str]:
    """Every id the collection holds, read from Chroma (ids only: no metadata)."""
    return {cid for page in pages(collection, []) for cid in page["ids"]}


def _saved(path: Path | None, token: str | None, count: int) -> dict | None:
    """What `path` holds if it was saved under `token` for `count` records, else None."""
    loaded = load_pickles(path) if token else None
    saved = loaded[0] if loaded else None
    if not isinstance(saved, dict) or saved.get("token") != token:
        return None
    ids = saved.get("ids")
    return saved if isinstance(ids, list) and len(ids) == count else None


def saved_ids(path: Path | None, token: str | None, count: int) -> set[str] | None:
    """The ids in `path` if they were saved under `token` for `count` records, else None
    (then read Chroma instead)."""
    saved = _saved(path, token, count)
    return set(saved["ids"]) if saved else None


def saved_paths(path: Path | None, token: str | None, count: int) -> list[str] | None:
    """Every path the collection holds, sorted, if `path` was saved under `token` for `count`
    records (and by a sync that listed them), else None."""
    paths = (_saved(path, token, count) or {}).get("paths")
    return paths if isinstance(paths, list) else None


def save_ids(path: Path, token: str, ids: list[str], paths: list[str] | None = None) -> None:
    with atomic_writer(path) as f:
        pickle.dump({"token": token, "ids": list(ids), "paths": paths}, f, protocol=pickle.HIGHEST_PROTOCOL)
