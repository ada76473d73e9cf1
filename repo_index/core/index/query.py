"""Nearest chunks of one collection to a query vector."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .client import names_the_server
from .lexical import LexicalIndex
from .paths import matching_paths

# A path filter that leaves at most this many records is answered by ranking them all:
# Chroma's HNSW search under a filter that few records pass can miss them (one file's chunk
# was not found even by its own vector, among 1,000 similar ones). Fetching 1,000 vectors
# costs about a tenth of a second.
EXACT_SCAN_RECORDS = 1000


class NoPlaces(LookupError):
    """The collection's records carry no lines and no lexical index is at hand to say them."""


@dataclass(frozen=True)
class Hit:
    repo: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    language: str
    score: float  # cosine similarity (1 is identical); in hybrid and lexical modes the fused rank score
    text: str
    chunk_id: str = ""
    defines: str = ""  # the definitions whose first line the chunk holds, joined by ", " (records.py)


@names_the_server
def query_collection(collection, repo: str, vector: np.ndarray, k: int, where: dict | None = None,
                     path_glob: str | None = None, spans_file: Path | None = None,
                     index: LexicalIndex | None = None) -> list[Hit]:
    """The `k` nearest records matching `where` and, if given, whose path matches
    `path_glob` (resolved against the collection's paths, `spans_file` being the last
    sync's list of them: see paths.py); their places read from `index` (hits_from_records)."""
    nearest = nearest_ids(collection, vector, k, where, path_glob, spans_file)
    records = hits_from_records(collection, repo, [cid for cid, _ in nearest], index=index)
    found = {h.chunk_id: h for h in records}
    return [replace(found[cid], score=score) for cid, score in nearest if cid in found]


@names_the_server
def nearest_ids(collection, vector: np.ndarray, k: int, where: dict | None = None, path_glob: str | None = None,
                spans_file: Path | None = None) -> list[tuple[str, float]]:
    """(id, cosine similarity) of the `k` nearest records, as `query_collection` picks
    them, without reading their metadata: a caller that keeps only some of them reads
    only theirs (reading them costs more than the search itself)."""
    if path_glob:
        matched = matching_paths(collection, path_glob, spans_file)
        if matched == []:
            return []
        if matched is not None:  # Chroma searches only these records
            by_path = {"path": {"$in": matched}}
            where = {"$and": [where, by_path]} if where else by_path
            ids = collection.get(where=where, include=[])["ids"]
            if len(ids) <= EXACT_SCAN_RECORDS:
                return _ranked(collection, vector, k, ids)
    result = collection.query(query_embeddings=vector.reshape(1, -1), n_results=k, where=where or None,
                              include=["distances"])
    return [(cid, 1.0 - float(dist)) for cid, dist in zip(result["ids"][0], result["distances"][0])]


def _ranked(collection, vector: np.ndarray, k: int, ids: list[str]) -> list[tuple[str, float]]:
    """The `k` of `ids` nearest to `vector` by cosine similarity, every one compared."""
    if not ids:
        return []
    got = collection.get(ids=ids, include=["embeddings"])
    matrix = np.asarray(got["embeddings"], dtype=np.float32)
    scores = matrix @ vector / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector) + 1e-12)
    best = np.argsort(-scores, kind="stable")[:k]
    return [(got["ids"][i], float(scores[i])) for i in best]


@names_the_server
def hits_from_records(collection, repo: str, ids: list[str], where: dict | None = None,
                      index: LexicalIndex | None = None) -> list[Hit]:
    """The records `ids` (those of them `where` admits) as hits with no score. A record
    carries only its path and language (sync.py): its lines, names and text are read from
    the repository's lexical `index`, synced before the collection, so a record it lacks
    is a chunk deleted since, left out. With no index, the records' own metadata, which
    only records written before the lexical index held places carry."""
    if not ids:
        return []
    if index is None:
        got = collection.get(ids=ids, where=where or None, include=["metadatas", "documents"])
        if any("start_line" not in (meta or {}) for meta in got["metadatas"]):
            raise NoPlaces(f"the lines of {repo}'s chunks are kept in its lexical index, which is missing or of an "
                           f"older version: re-run `repo-index index {repo}`")
        return [_hit(repo, cid, meta, doc) for cid, meta, doc in zip(got["ids"], got["metadatas"], got["documents"])]
    held = collection.get(ids=ids, where=where or None, include=[])["ids"]
    places = index.places(held)
    return [Hit(repo, p.path, p.start_line, p.end_line, p.symbol, p.language, 0.0, "", cid, p.defines)
            for cid, p in ((cid, places.get(cid)) for cid in held) if p is not None]


def _hit(repo: str, cid: str, meta: dict, doc: str | None) -> Hit:
    return Hit(repo, meta["path"], int(meta["start_line"]), int(meta["end_line"]), meta.get("symbol", ""),
               meta.get("language", ""), 0.0, doc or "", cid, meta.get("defines") or "")
