"""Chroma: one collection per repository, kept exactly in step with the chunk table.

`sync_collection` diffs the collection against the current chunks: new ids are added
with their vectors, ids that vanished are deleted, ids that only moved get their line
metadata updated (a chunk id is derived from path, symbol and content, so an unchanged
id means unchanged text and vector). Writes go in bounded batches, each fetching the
vectors of its rows only, so a sync never needs the whole matrix in memory. Collection
metadata records the embedding model, its dimensions and the last indexed commit; a
collection built with another model is rebuilt, never mixed.

What a sync knows of the collection it needs only ids and line spans for; reading them
back from Chroma costs ~0.1 ms a record (most of an unchanged nightly sync of a large
repository). So each sync leaves them in a local file stamped with a random token that it
also writes into the collection's metadata, and clears that token before it changes any
record: the next sync trusts the file only when the tokens (and the record count) agree,
so a crashed sync, another machine's sync or a recreated collection all fall back to
reading Chroma.

A Chroma server that cannot be reached (down, restarting, wrong port) raises
`ChromaUnavailable`, naming the server and the fix, rather than a bare connection error;
a re-run once it is back converges, since the sync is a diff.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import pickle
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..paths import atomic_writer, data_dir, load_pickles

WRITE_BATCH = 1000
READ_BATCH = 5000
DIMENSION_SAMPLE = 100  # vectors check_consistency reads back
CHROMA_TOKEN_ENV = "CHROMA_AUTH_TOKEN"  # the server token is read from this variable
SYNC_TOKEN = "repo_index_sync"  # collection metadata key: the token of the spans file in step
RECORD_FIELDS = ("path", "start_line", "end_line", "symbol", "language", "content_hash", "commit")


class ChromaUnavailable(RuntimeError):
    """The Chroma server cannot be reached; the message names it and the fix."""


@dataclass(frozen=True)
class ChromaSettings:
    mode: str = "embedded"  # "embedded" (PersistentClient) or "server" (HttpClient)
    path: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    ssl: bool = False
    token: str | None = None
    collection_prefix: str = "repo_index-"


@dataclass
class SyncStats:
    added: int = 0
    deleted: int = 0
    moved: int = 0
    unchanged: int = 0
    rebuilt: bool = False
    total: int = 0
    spans_from: str = ""  # where the sync read the collection's ids and lines: "file" or "chroma"


def chroma_settings_from_env() -> ChromaSettings:
    """Chroma location from REPO_INDEX_CHROMA_* variables (the Dagster resource reads the same)."""
    return ChromaSettings(
        mode=os.environ.get("REPO_INDEX_CHROMA_MODE", "embedded"),
        path=os.environ.get("REPO_INDEX_CHROMA_PATH") or str(data_dir() / "chroma"),
        host=os.environ.get("REPO_INDEX_CHROMA_HOST", "127.0.0.1"),
        port=int(os.environ.get("REPO_INDEX_CHROMA_PORT", "8000")),
        ssl=os.environ.get("REPO_INDEX_CHROMA_SSL", "").lower() in ("1", "true", "yes"),
        token=os.environ.get(CHROMA_TOKEN_ENV) or None,
        collection_prefix=os.environ.get("REPO_INDEX_COLLECTION_PREFIX", "repo_index-"),
    )


def open_client(settings: ChromaSettings):
    import chromadb
    from chromadb.config import Settings

    chroma_settings = Settings(anonymized_telemetry=False)
    if settings.mode == "embedded":
        Path(settings.path).mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=settings.path, settings=chroma_settings)
    if settings.mode == "server":
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else None
        try:
            return chromadb.HttpClient(host=settings.host, port=settings.port, ssl=settings.ssl,
                                       headers=headers, settings=chroma_settings)
        except Exception as exc:
            if _is_connection_error(exc):
                address = f"{'https' if settings.ssl else 'http'}://{settings.host}:{settings.port}"
                raise _unreachable(address, exc) from exc
            raise
    raise ValueError(f"unknown Chroma mode {settings.mode!r}: use 'embedded' or 'server'")


def _is_connection_error(exc: BaseException) -> bool:
    import httpx

    # HttpClient's constructor turns a refused connection into this ValueError.
    return isinstance(exc, (httpx.TransportError, ConnectionError)) or (
        isinstance(exc, ValueError) and "Could not connect to a Chroma server" in str(exc))


def _server_address(client_or_collection) -> str:
    api = getattr(client_or_collection, "_client", client_or_collection)  # a Collection's API client
    try:
        s = api.get_settings()
        return f"{'https' if s.chroma_server_ssl_enabled else 'http'}://{s.chroma_server_host}:{s.chroma_server_http_port}"
    except Exception:
        return "the configured address"


def _unreachable(address: str, exc: BaseException) -> ChromaUnavailable:
    return ChromaUnavailable(
        f"cannot reach the Chroma server at {address} ({type(exc).__name__}: {exc}). Start it "
        "(`chroma run --path DIR --host HOST --port PORT`) or point REPO_INDEX_CHROMA_HOST and "
        "REPO_INDEX_CHROMA_PORT at a running one, then re-run: the collection converges.")


def _names_the_server(fn):
    """Re-raise a connection failure of `fn(client_or_collection, ...)` as ChromaUnavailable."""
    @functools.wraps(fn)
    def wrapper(target, *args, **kwargs):
        try:
            return fn(target, *args, **kwargs)
        except ChromaUnavailable:
            raise
        except Exception as exc:
            if _is_connection_error(exc):
                raise _unreachable(_server_address(target), exc) from exc
            raise
    return wrapper


def collection_name(prefix: str, repo: str) -> str:
    return f"{prefix}{repo}"


def _record_metadata(row, commit: str) -> dict:
    return {
        "path": row.path, "start_line": int(row.start_line), "end_line": int(row.end_line),
        "symbol": row.symbol, "language": row.language, "content_hash": row.content_hash,
        "commit": commit,
    }


def _pages(collection, include: list[str]) -> Iterator[dict]:
    """The whole collection, READ_BATCH records at a time."""
    offset = 0
    while True:
        page = collection.get(include=include, limit=READ_BATCH, offset=offset)
        yield page
        if len(page["ids"]) < READ_BATCH:
            return
        offset += READ_BATCH


@_names_the_server
def existing_records(collection) -> dict[str, dict]:
    """id -> metadata for the whole collection, read in pages."""
    return {cid: meta or {} for page in _pages(collection, ["metadatas"])
            for cid, meta in zip(page["ids"], page["metadatas"])}


def _line_spans(collection) -> dict[str, tuple]:
    """id -> (start_line, end_line): all a sync needs of a record, at a fraction of the
    memory of its whole metadata."""
    spans = {}
    for page in _pages(collection, ["metadatas"]):
        for cid, meta in zip(page["ids"], page["metadatas"]):
            meta = meta or {}
            spans[cid] = (meta.get("start_line"), meta.get("end_line"))
    return spans


def spans_path(name: str) -> Path:
    """Where a sync leaves the line spans of collection `name` for the next one."""
    return data_dir() / "collection_spans" / f"{name}.pkl"


def _saved_spans(path: Path | None, token: str | None, count: int) -> dict[str, tuple] | None:
    loaded = load_pickles(path) if token else None  # None: read Chroma instead
    saved = loaded[0] if loaded else None
    if not isinstance(saved, dict) or saved.get("token") != token:
        return None
    spans = saved.get("spans")
    return spans if isinstance(spans, dict) and len(spans) == count else None


def _save_spans(path: Path, token: str, spans: dict[str, tuple]) -> None:
    with atomic_writer(path) as f:
        pickle.dump({"token": token, "spans": spans}, f, protocol=pickle.HIGHEST_PROTOCOL)


@dataclass(frozen=True)
class Consistency:
    missing: list[str]  # current chunk ids absent from the collection
    orphaned: list[str]  # ids in the collection that are not current chunks
    wrong_dimensions: int  # records whose vector does not have the model's dimensions: none or all
    records: int
    sampled: int  # vectors whose dimensions were read


@_names_the_server
def check_consistency(collection, chunk_ids: list[str], dimensions: int) -> Consistency:
    """Compare the collection's ids (read in pages, without vectors) to the chunk table, and
    check the dimensions of a sample of DIMENSION_SAMPLE vectors.

    A sample is enough: Chroma fixes a collection's dimensionality with its first vector and
    refuses a vector of any other (add, upsert and update alike), so every record has the
    dimensions of any one; the `dimensions` sync_collection records must agree as well.
    """
    ids = [cid for page in _pages(collection, []) for cid in page["ids"]]
    sample = collection.get(include=["embeddings"], limit=DIMENSION_SAMPLE)["embeddings"]
    sample = [] if sample is None else sample
    recorded = int((collection.metadata or {}).get("dimensions", dimensions))
    mismatch = recorded != dimensions or any(len(e) != dimensions for e in sample)
    have, want = set(ids), set(chunk_ids)
    return Consistency(sorted(want - have), sorted(have - want), len(ids) if mismatch else 0, len(ids), len(sample))


@_names_the_server
def get_collection(client, name: str):
    from chromadb.errors import NotFoundError

    try:
        return client.get_collection(name, embedding_function=None)
    except (NotFoundError, ValueError):
        return None


@_names_the_server
def sync_collection(
    client,
    name: str,
    chunks: pd.DataFrame,
    chunk_ids: list[str],
    vectors: np.ndarray | Callable[[list[int]], np.ndarray],
    model: str,
    dimensions: int,
    commit: str,
    repo: str,
    spans_file: Path | None = None,
) -> SyncStats:
    """Make collection `name` hold exactly `chunks`. `vectors` is the float32 matrix (row i
    for chunk_ids[i]) or `rows(indexes)` returning those rows: it is asked, one write batch
    at a time, only for the rows added, so an unchanged re-sync reads no vector. With
    `spans_file` (see `spans_path`) the next sync need not read every record's metadata."""
    fetch = vectors if callable(vectors) else vectors.__getitem__
    stats = SyncStats()
    if list(chunks["chunk_id"]) != list(chunk_ids):
        raise ValueError("chunk table and embeddings disagree: re-materialize chunk_embeddings")
    collection = get_collection(client, name)
    if collection is not None:
        meta = collection.metadata or {}
        if meta.get("embedding_model") != model or int(meta.get("dimensions", -1)) != dimensions:
            client.delete_collection(name)  # vectors of two models never share a space
            collection, stats.rebuilt = None, True
    coll_meta = {"embedding_model": model, "dimensions": dimensions, "repository": repo, "commit": commit}
    if collection is None:
        collection = client.create_collection(
            name, metadata=coll_meta, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)

    token = (collection.metadata or {}).get(SYNC_TOKEN)
    current = _saved_spans(spans_file, token, collection.count())
    stats.spans_from = "file" if current is not None else "chroma"
    if current is None:
        current = _line_spans(collection)
    wanted = set(chunk_ids)
    stale = [cid for cid in current if cid not in wanted]
    rows = list(chunks.itertuples(index=False))
    new_rows = [i for i, cid in enumerate(chunk_ids) if cid not in current]
    moved_rows = [i for i, cid in enumerate(chunk_ids)
                  if cid in current and current[cid] != (int(rows[i].start_line), int(rows[i].end_line))]
    if token and (stale or new_rows or moved_rows):
        collection.modify(metadata={**coll_meta, SYNC_TOKEN: ""})  # the spans file is stale from here on

    for i in range(0, len(stale), WRITE_BATCH):
        collection.delete(ids=stale[i:i + WRITE_BATCH])
    stats.deleted = len(stale)

    for i in range(0, len(new_rows), WRITE_BATCH):
        part = new_rows[i:i + WRITE_BATCH]
        collection.add(
            ids=[chunk_ids[j] for j in part],
            embeddings=fetch(part),
            documents=[rows[j].text for j in part],
            metadatas=[_record_metadata(rows[j], commit) for j in part],
        )
    for i in range(0, len(moved_rows), WRITE_BATCH):
        part = moved_rows[i:i + WRITE_BATCH]
        collection.update(ids=[chunk_ids[j] for j in part],
                          metadatas=[_record_metadata(rows[j], commit) for j in part])
    stats.added, stats.moved = len(new_rows), len(moved_rows)
    stats.unchanged = len(chunk_ids) - stats.added - stats.moved
    if spans_file is not None:  # the file first: a crash before the token leaves them disagreeing
        token = uuid.uuid4().hex
        _save_spans(spans_file, token, {cid: (int(r.start_line), int(r.end_line)) for cid, r in zip(chunk_ids, rows)})
        coll_meta[SYNC_TOKEN] = token
    collection.modify(metadata=coll_meta)
    stats.total = collection.count()
    return stats


@dataclass(frozen=True)
class Hit:
    repo: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    language: str
    score: float  # cosine similarity, 1 is identical
    text: str


@_names_the_server
def query_collection(collection, repo: str, vector: np.ndarray, k: int,
                     where: dict | None = None, path_glob: str | None = None) -> list[Hit]:
    # A path glob is applied after the query, so ask for more candidates.
    n = k * 10 if path_glob else k
    result = collection.query(query_embeddings=vector.reshape(1, -1), n_results=n, where=where or None,
                              include=["metadatas", "documents", "distances"])
    hits = []
    for meta, doc, dist in zip(result["metadatas"][0], result["documents"][0], result["distances"][0]):
        if path_glob and not fnmatch.fnmatch(meta["path"], path_glob):
            continue
        hits.append(Hit(repo, meta["path"], int(meta["start_line"]), int(meta["end_line"]),
                        meta.get("symbol", ""), meta.get("language", ""), 1.0 - float(dist), doc))
    return hits[:k]


def pick_smoke_symbol(chunks: pd.DataFrame) -> tuple[str, str] | None:
    """A distinctive definition of the repository: (its breadcrumb, the query to ask for it).

    The longest definition name that names exactly one breadcrumb, so the expected answer
    is unambiguous; ties broken by breadcrumb for a stable choice run after run.
    """
    candidates: dict[str, set[str]] = {}
    for symbol in chunks["symbol"]:
        if symbol:
            name = symbol.replace("::", ".").replace(" > ", ".").split(".")[-1].strip()
            if len(name) >= 4:
                candidates.setdefault(name, set()).add(symbol)
    unique = [(name, next(iter(s))) for name, s in candidates.items() if len(s) == 1]
    if not unique:
        return None
    name, symbol = max(unique, key=lambda item: (len(item[0]), item[1]))
    return symbol, name.replace("_", " ").strip()


@_names_the_server
def symbol_rank(collection, vector: np.ndarray, symbol: str, k: int = 5) -> int | None:
    """1-based rank of the first chunk of `symbol` among the top `k` hits, or None."""
    result = collection.query(query_embeddings=vector.reshape(1, -1), n_results=k, include=["metadatas"])
    for rank, meta in enumerate(result["metadatas"][0], start=1):
        if meta.get("symbol") == symbol:
            return rank
    return None
