"""Nearest chunks of one collection to a query vector."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np

from .client import names_the_server


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


@names_the_server
def query_collection(collection, repo: str, vector: np.ndarray, k: int,
                     where: dict | None = None, path_glob: str | None = None) -> list[Hit]:
    # A path glob is applied after the query, so ask for more candidates.
    n = k * 10 if path_glob else k
    result = collection.query(query_embeddings=vector.reshape(1, -1), n_results=n, where=where or None,
                              include=["metadatas", "documents", "distances"])
    hits = []
    for cid, meta, doc, dist in zip(result["ids"][0], result["metadatas"][0], result["documents"][0],
                                    result["distances"][0]):
        if path_glob and not fnmatch.fnmatch(meta["path"], path_glob):
            continue
        hits.append(_hit(repo, cid, meta, doc, 1.0 - float(dist)))
    return hits[:k]


@names_the_server
def hits_from_records(collection, repo: str, ids: list[str], where: dict | None = None) -> list[Hit]:
    """The records `ids` (those of them `where` admits) as hits with no score."""
    if not ids:
        return []
    got = collection.get(ids=ids, where=where or None, include=["metadatas", "documents"])
    return [_hit(repo, cid, meta, doc, 0.0) for cid, meta, doc in zip(got["ids"], got["metadatas"], got["documents"])]


def _hit(repo: str, cid: str, meta: dict, doc: str, score: float) -> Hit:
    return Hit(repo, meta["path"], int(meta["start_line"]), int(meta["end_line"]), meta.get("symbol", ""),
               meta.get("language", ""), score, doc, cid)
