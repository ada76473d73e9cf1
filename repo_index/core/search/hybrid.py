"""Ranking one repository's chunks for a query: by vectors, by words (BM25), or both fused.

Hybrid ranking is reciprocal-rank fusion (each list gives 1/(60 + rank)): it needs no
calibration between cosine similarities and BM25 scores, which live on unrelated scales,
and its scores mean the same in every repository, so results of several repositories
merge by fused score. Then, in every mode, one hit stands for each place in the code: hits
that overlap the same lines, or are pieces of the same definition, fold into the
best-ranked one. And a query naming an identifier the repository defines (`parse_headers`,
`formatTime`, or a one-word query) gets that definition first, whatever the fused order
says.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..index.lexical import LexicalIndex
from ..index.query import Hit, hits_from_records, nearest_ids

MODES = ("hybrid", "vector", "lexical")
CANDIDATES = 50  # from each side, for fusion
RRF_K = 60
_CODE_SHAPED = re.compile(r"_|[a-z][A-Z]|[A-Za-z][0-9]|[0-9][A-Za-z]")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def named_identifiers(query: str) -> set[str]:
    """The identifiers a query names, lowercased: code-shaped words (`max_tokens`,
    `parseHTTPResponse`), or the query's only word. Plain English words ("rotate the log
    file") are not taken for names."""
    words = _WORD.findall(query)
    if len(words) == 1:
        return {words[0].lower()}
    return {w.lower() for w in words if _CODE_SHAPED.search(w)}


def rrf(*rankings: list[str]) -> dict[str, float]:
    """Reciprocal-rank fusion of ranked id lists: id -> fused score."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, cid in enumerate(ranking):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank + 1)
    return fused


def repository_hits(collection, repo: str, query: str, vector: np.ndarray | None, k: int, mode: str,
                    lexical_file: Path | None, where: dict | None = None, language: str | None = None,
                    path_glob: str | None = None, notice: Callable[[str], None] | None = None,
                    spans_file: Path | None = None) -> list[Hit]:
    """The top `k` chunks of one repository for `query` in `mode` (`spans_file`: see
    query_collection)."""
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
    index = _open_index(lexical_file)
    if index is None:
        if notice and mode != "vector":
            notice(f"{repo}: no lexical index yet (re-run `repo-index index {repo}`); searched by vectors only")
        return [] if mode == "lexical" else _vector_hits(collection, repo, vector, k, where, path_glob, spans_file)
    with index:  # open once: ranking, the places, then the texts
        if mode == "vector":
            return with_texts(_vector_hits(collection, repo, vector, k, where, path_glob, spans_file, index), index)
        n = max(CANDIDATES, k)
        words = index.search(query, n, language, path_glob)
        named = named_identifiers(query)
        defining = [h for h in index.search(" ".join(named), n, language, path_glob) if h.names & named] if named else []
        by_vector = nearest_ids(collection, vector, n, where, path_glob, spans_file) if mode == "hybrid" else []
        fused = rrf([cid for cid, _ in by_vector], [h.chunk_id for h in words])
        first = list(dict.fromkeys(h.chunk_id for h in defining))
        # A definition of a named identifier scores 1 + its fused score: above any fused score
        # (at most 2/61), here and when repositories are merged.
        ranked = [(cid, fused.get(cid, 0.0) + 1) for cid in first]
        named_first = set(first)
        ranked += sorted(((cid, score) for cid, score in fused.items() if cid not in named_first), key=lambda r: -r[1])
        return with_texts(_places(collection, repo, ranked, k, where, index), index)


def _open_index(lexical_file: Path | None) -> LexicalIndex | None:
    """The repository's lexical index for reading, or None when it has none yet, or one of
    an older version (the next sync rebuilds it; until then the collection's older records
    still carry their places)."""
    try:
        return LexicalIndex(lexical_file, create=False) if lexical_file is not None else None
    except FileNotFoundError:  # StaleLexicalIndex included
        return None


def _places(collection, repo: str, ranked: list[tuple[str, float]], k: int, where: dict | None,
            index: LexicalIndex | None) -> list[Hit]:
    """The first `k` places of `ranked` (id, score), best first, folded (`_one_per_place`).
    Records are read a few at a time, as far down the ranking as folding needs: reading
    every candidate's metadata cost more than ranking them. `where` applies to each (a
    candidate only the lexical side found has not met it yet)."""
    hits: list[Hit] = []
    start, step = 0, max(2 * k, 10)
    while start < len(ranked):
        part = ranked[start:start + step]
        start += step
        found = {h.chunk_id: h for h in hits_from_records(collection, repo, [cid for cid, _ in part], where, index)}
        hits += [_scored(found[cid], score) for cid, score in part if cid in found]
        places = _one_per_place(hits)
        if len(places) >= k:
            return places[:k]
    return _one_per_place(hits)


def with_texts(hits: list[Hit], index: LexicalIndex) -> list[Hit]:
    """`hits` with their chunk's text: a collection synced since the lexical index holds
    the text keeps none itself (writing it there cost a quarter of the sync), older
    records still do."""
    wanted = [h.chunk_id for h in hits if not h.text]
    if not wanted:
        return hits
    texts = index.texts(wanted)
    return [h if h.text else replace(h, text=texts.get(h.chunk_id, "")) for h in hits]


def _vector_hits(collection, repo: str, vector: np.ndarray, k: int, where: dict | None, path_glob: str | None,
                 spans_file: Path | None, index: LexicalIndex | None = None) -> list[Hit]:
    """The top `k` places by vectors alone. Pieces of one long definition are near the same
    queries, so more candidates are asked for than kept: folded, they would otherwise leave
    fewer than `k` places."""
    nearest = nearest_ids(collection, vector, max(k * 3, k + 10), where, path_glob, spans_file)
    return _places(collection, repo, nearest, k, None, index)


def _scored(hit: Hit, score: float) -> Hit:
    return replace(hit, score=round(score, 6))


def _one_per_place(hits: list[Hit]) -> list[Hit]:
    """Best first: drop a hit whose lines overlap a better hit's in the same file, or that is
    another piece of the same definition."""
    kept: list[Hit] = []
    for hit in hits:
        if any(k.path == hit.path and (k.start_line <= hit.end_line and hit.start_line <= k.end_line
                                       or (hit.symbol and k.symbol == hit.symbol)) for k in kept):
            continue
        kept.append(hit)
    return kept
