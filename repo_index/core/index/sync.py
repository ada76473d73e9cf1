"""One collection per repository, kept exactly in step with the chunk table.

`sync_collection` diffs the collection's ids against the current chunks': new ids are
added with their vectors, ids that vanished are deleted (a chunk id is derived from path,
names and content, so an unchanged id means unchanged text, vector and names). A record
carries only what search filters on, `path` and `language`: a chunk's lines, symbol and
text are kept by the lexical index (lexical.py), so a chunk that only moved costs Chroma
nothing, and each record costs Chroma two metadata rows, not eight (a write at 1,536
dimensions went 14% faster). Writes go in bounded batches, each fetching the
vectors of its rows only, so a sync never needs the whole matrix in memory. Collection
metadata records the embedding model (provider, server, dimensions, window, encoding,
prefixes) and the last indexed commit; a collection built with another model (or document
prefix) is rebuilt, never mixed,
and so is one that Chroma can no longer read.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..embed.model import EmbeddingModel
from .client import get_collection, names_the_server, pages, unreadable
from .spans import SYNC_TOKEN, read_ids, save_ids, saved_ids

WRITE_BATCH = 1000
# The HNSW index of a new collection (Chroma reads it at creation only). ef_construction 75,
# not Chroma's 100: writes 14% faster at 1,536 dimensions (866 against 760 vectors/s), 7% at
# 384, for recall@10 of 0.971 against 0.981 on real embeddings (bench/ingest.py, 2026-11-27).
HNSW_CONFIGURATION = {"space": "cosine", "ef_construction": 75}
# A collection for another model is built under this name beside the live one, then swapped
# in. Upper case: no repository name (a lowercase slug) can end with it.
REBUILD_SUFFIX = "-REBUILD"


@dataclass
class SyncStats:
    added: int = 0
    deleted: int = 0
    unchanged: int = 0
    rebuilt: bool = False
    repaired: str = ""  # why the collection could not be read, when it was rebuilt for that
    total: int = 0
    spans_from: str = ""  # where the sync read the collection's ids: "file" or "chroma"


def record_metadata(path: str, language: str) -> dict:
    """A record's metadata: what `where` filters on (search's --language and --path).
    Records written before 2026-11-27 also carry start_line, end_line, symbol, defines,
    content_hash and commit, unread."""
    return {"path": path, "language": language}


@names_the_server
def existing_records(collection) -> dict[str, dict]:
    """id -> metadata for the whole collection, read in pages."""
    return {cid: meta or {} for page in pages(collection, ["metadatas"])
            for cid, meta in zip(page["ids"], page["metadatas"])}


@names_the_server
def sync_collection(
    client,
    name: str,
    chunks: pd.DataFrame,
    chunk_ids: list[str],
    vectors: np.ndarray | Callable[[list[int]], np.ndarray],
    model: EmbeddingModel,
    commit: str,
    repo: str,
    spans_file: Path | None = None,
    store_text: bool = True,
) -> SyncStats:
    """Make collection `name` hold exactly `chunks`. `vectors` is the float32 matrix (row i
    for chunk_ids[i]) or `rows(indexes)` returning those rows: it is asked, one write batch
    at a time, only for the rows added, so an unchanged re-sync reads no vector. With
    `spans_file` (see spans.py) the next sync need not read every record's id. Not
    `store_text`: records are added without their text as Chroma documents, for a caller
    that keeps it beside the collection (the lexical index): storing it cost a quarter of
    the write (Chroma indexes every document for full-text search too)."""
    fetch = vectors if callable(vectors) else vectors.__getitem__
    stats = SyncStats()
    if list(chunks["chunk_id"]) != list(chunk_ids):
        raise ValueError("chunk table and embeddings disagree: re-materialize chunk_embeddings")
    # Vectors of two models never share a space: a collection of another model is rebuilt
    # beside it and swapped in when complete, so search keeps answering from the old one
    # meanwhile (and still does if the rebuild fails; the next run resumes it).
    collection, live = get_collection(client, name), None
    target = name
    # A collection Chroma cannot read (index files a full disk left half written) is rebuilt
    # the same way, from the chunks and the cached vectors: no text is embedded again.
    stats.repaired = (unreadable(collection) or "") if collection is not None else ""
    if collection is not None and (stats.repaired or not _same_space(collection, model)):
        live, target, stats.rebuilt = collection, name + REBUILD_SUFFIX, not _same_space(collection, model)
        collection = get_collection(client, target)
        if collection is not None and unreadable(collection):
            client.delete_collection(target)  # a rebuild the full disk damaged too: start it again
            collection = None
    elif get_collection(client, name + REBUILD_SUFFIX) is not None:
        client.delete_collection(name + REBUILD_SUFFIX)  # a rebuild for a model no longer wanted
    if collection is not None and not _same_space(collection, model):
        client.delete_collection(target)  # a rebuild left for yet another model
        collection = None
    coll_meta = {**model.collection_metadata(), "repository": repo, "commit": commit}
    if collection is None:
        collection = client.create_collection(
            target, metadata=coll_meta, configuration={"hnsw": dict(HNSW_CONFIGURATION)}, embedding_function=None)

    token = (collection.metadata or {}).get(SYNC_TOKEN)
    current = saved_ids(spans_file, token, collection.count())
    stats.spans_from = "file" if current is not None else "chroma"
    if current is None:
        current = read_ids(collection)
    wanted = set(chunk_ids)
    stale = [cid for cid in current if cid not in wanted]
    new_rows = [i for i, cid in enumerate(chunk_ids) if cid not in current]
    if token and (stale or new_rows):
        collection.modify(metadata={**coll_meta, SYNC_TOKEN: ""})  # the ids file is stale from here on

    # Deletes first, the adds last and their short batch first: see write_batches.
    for part in write_batches(stale):
        collection.delete(ids=part)
    stats.deleted = len(stale)
    if new_rows:
        paths, languages = chunks["path"].tolist(), chunks["language"].tolist()
        texts = chunks["text"].tolist() if store_text else None
        for part in write_batches(new_rows):
            collection.add(
                ids=[chunk_ids[j] for j in part],
                embeddings=fetch(part),
                documents=[texts[j] for j in part] if texts else None,
                metadatas=[record_metadata(paths[j], languages[j]) for j in part],
            )
    stats.added = len(new_rows)
    stats.unchanged = len(chunk_ids) - stats.added
    if spans_file is not None:  # the file first: a crash before the token leaves them disagreeing
        token = uuid.uuid4().hex
        save_ids(spans_file, token, chunk_ids, sorted(set(chunks["path"])))
        coll_meta[SYNC_TOKEN] = token
    collection.modify(metadata=coll_meta)
    if live is not None:  # the swap: a moment with no collection of that name, never a mixed one
        client.delete_collection(name)
        collection.modify(name=name)
    stats.total = collection.count()
    return stats


def write_batches(items: list) -> Iterator[list]:
    """`items` in batches of WRITE_BATCH, the short batch first. Embedded Chroma saves a
    collection's HNSW index whenever `sync_threshold` records have reached it since the last
    save, and not when the process ends: with the short batch last, its records stayed
    unsaved, and every process opening the collection next (each search) inserted them into
    its copy of the index again from the log. Short batch first, a sync that ends with a full
    batch (any sync of WRITE_BATCH records or more) leaves the index saved."""
    first = len(items) % WRITE_BATCH
    if first:
        yield items[:first]
    for i in range(first, len(items), WRITE_BATCH):
        yield items[i:i + WRITE_BATCH]


def _same_space(collection, model: EmbeddingModel) -> bool:
    """Vectors of the same model, size and document prefix (another prefix moves every vector;
    a collection that records none was built with none). The query prefix is only recorded."""
    meta = collection.metadata or {}
    return (meta.get("embedding_model") == model.name and int(meta.get("dimensions", -1)) == model.dimensions
            and (meta.get("embedding_document_prefix") or "") == model.document_prefix)
