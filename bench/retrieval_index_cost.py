"""What the lexical side costs an index run, measured apart from Dagster's own overhead.

The pipeline's timings cover every stage at once, so the lexical index's share is measured
here directly: `LexicalIndex.sync` (the call `vector_collection` makes) over the chunks of
the benchmark's collection into a new file (the full index's cost), then again unchanged
(the unchanged reindex's cost).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from repo_index.core.index.client import ChromaSettings, get_collection, open_client, pages, read_lock
from repo_index.core.index.lexical import LexicalIndex, lexical_path

COLUMNS = ("path", "start_line", "end_line", "symbol", "defines", "language", "content_hash")


def collection_chunks(settings, repo: str) -> pd.DataFrame:
    """The chunk table as the index of `repo` holds it: ids and metadata from the
    collection, each text from the lexical index beside it (the collection keeps none)."""
    chroma = ChromaSettings.from_settings(settings)
    rows = []
    with read_lock(chroma):
        coll = get_collection(open_client(chroma), chroma.collection_name(repo))
        for page in pages(coll, ["documents", "metadatas"]):
            for cid, text, meta in zip(page["ids"], page["documents"], page["metadatas"]):
                rows.append({"chunk_id": cid, "text": text, **{c: meta.get(c, "") for c in COLUMNS}})
        with LexicalIndex(lexical_path(chroma.lexical_dir(), coll.name), create=False) as index:
            texts = index.texts([r["chunk_id"] for r in rows if r["text"] is None])
    for row in rows:
        row["text"] = row["text"] if row["text"] is not None else texts[row["chunk_id"]]
    return pd.DataFrame(rows)


def lexical_sync_seconds(chunks: pd.DataFrame, folder: Path) -> dict:
    path = folder / "lexical-cost.sqlite"
    ids = list(chunks["chunk_id"])
    out = {}
    for run in ("full", "unchanged"):
        started = time.perf_counter()
        with LexicalIndex(path) as index:
            index.sync(chunks, ids)
        out[run] = round(time.perf_counter() - started, 3)
    path.unlink()
    return out
