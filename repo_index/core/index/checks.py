"""What the asset checks read back from a collection: ids against the chunk table, the
vectors' dimensions, and whether a query for a distinctive symbol finds it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .client import names_the_server, pages
from .lexical import LexicalIndex

DIMENSION_SAMPLE = 100  # vectors check_consistency reads back


@dataclass(frozen=True)
class Consistency:
    missing: list[str]  # current chunk ids absent from the collection
    orphaned: list[str]  # ids in the collection that are not current chunks
    wrong_dimensions: int  # records whose vector does not have the model's dimensions: none or all
    records: int
    sampled: int  # vectors whose dimensions were read


@names_the_server
def check_consistency(collection, chunk_ids: list[str], dimensions: int) -> Consistency:
    """Compare the collection's ids (read in pages, without vectors) to the chunk table, and
    check the dimensions of a sample of DIMENSION_SAMPLE vectors.

    A sample is enough: Chroma fixes a collection's dimensionality with its first vector and
    refuses a vector of any other (add, upsert and update alike), so every record has the
    dimensions of any one; the `dimensions` sync_collection records must agree as well.
    """
    ids = [cid for page in pages(collection, []) for cid in page["ids"]]
    sample = collection.get(include=["embeddings"], limit=DIMENSION_SAMPLE)["embeddings"]
    sample = [] if sample is None else sample
    recorded = int((collection.metadata or {}).get("dimensions", dimensions))
    mismatch = recorded != dimensions or any(len(e) != dimensions for e in sample)
    have, want = set(ids), set(chunk_ids)
    return Consistency(sorted(want - have), sorted(have - want), len(ids) if mismatch else 0, len(ids), len(sample))


@dataclass(frozen=True)
class SmokeTarget:
    symbol: str  # the breadcrumb of a distinctive definition
    query: str  # what the check asks for it
    spans: dict[str, tuple[int, int]]  # path -> (first, last) line of the chunks that hold it


_SEPARATORS = (".", "::", " > ")


def pick_smoke_target(chunks: pd.DataFrame) -> SmokeTarget | None:
    """A distinctive definition of the repository, the query to ask for it, and the lines
    it covers.

    The longest definition name that names exactly one breadcrumb, so the expected answer
    is unambiguous; ties broken by breadcrumb for a stable choice run after run. Its lines
    are those of every chunk labelled with it or with a name inside it (a chunk is
    labelled after the first definition it holds, so a method that shares a chunk with
    its class header is in a chunk labelled after the class)."""
    # Each distinct label once (a long definition's pieces share one: 0.9 s a check at 116 k
    # chunks when every row was split), then the target's rows picked by pandas.
    labels = chunks["symbol"]
    candidates: dict[str, set[str]] = {}
    for symbol in labels.unique():
        if symbol:
            name = symbol.replace("::", ".").replace(" > ", ".").split(".")[-1].strip()
            if len(name) >= 4:
                candidates.setdefault(name, set()).add(symbol)
    unique = [(name, next(iter(s))) for name, s in candidates.items() if len(s) == 1]
    if not unique:
        return None
    name, symbol = max(unique, key=lambda item: (len(item[0]), item[1]))
    rows = chunks.loc[(labels == symbol) | labels.str.startswith(tuple(symbol + sep for sep in _SEPARATORS)),
                      ["path", "start_line", "end_line"]]
    spans: dict[str, tuple[int, int]] = {}
    for path, start, end in zip(rows["path"], rows["start_line"], rows["end_line"]):
        first, last = spans.get(path, (int(start), int(end)))
        spans[path] = (min(first, int(start)), max(last, int(end)))
    return SmokeTarget(symbol, name.replace("_", " ").strip(), spans)


@names_the_server
def smoke_rank(collection, vector: np.ndarray, target: SmokeTarget, index: LexicalIndex,
               k: int = 5) -> tuple[int | None, list[str]]:
    """1-based rank of the first of the top `k` hits that overlaps the target's lines (or
    None), and the top hits as `path:first-last symbol` (what a failed check shows); their
    places read from the repository's lexical `index` (the records carry none)."""
    result = collection.query(query_embeddings=vector.reshape(1, -1), n_results=k, include=[])
    places = index.places(result["ids"][0])
    rank, shown = None, []
    for i, cid in enumerate(result["ids"][0], start=1):
        place = places.get(cid)
        path, start, end = (place.path, place.start_line, place.end_line) if place else ("?", 0, 0)
        shown.append(f"{path}:{start}-{end} {place.symbol if place and place.symbol else '-'}")
        span = target.spans.get(path)
        if rank is None and span is not None and start <= span[1] and end >= span[0]:
            rank = i
    return rank, shown
