"""Warm query time on one repository of 100,000 chunks, with no embedding needed.

The real corpus's chunks (as its collection holds them) are repeated until there are
enough, each copy under its own folder and with its identifiers renamed (`name` becomes
`name_7` in copy 7; keywords and builtins are kept), so the text looks like one large
code base rather than one file many times. Vectors are random unit vectors of the model's
dimensions, written with the library's `sync_collection` into a collection that records
the real collection's model, so `search()` embeds the query as it would for a real one;
the lexical index is written from the same chunks by `LexicalIndex.sync`, as
`vector_collection` does. Random vectors make the ranking meaningless: this measures time.

Reported per mode: the median and p95 of `search()` over the queries after one untimed
search; and where that time goes, measured apart: the query's embedding with a model
loaded once (what a warm server pays), the nearest-neighbour query of the collection with
a ready vector, and the lexical index's BM25 query for fusion's 50 candidates.
"""

from __future__ import annotations

import builtins
import hashlib
import inspect
import keyword
import random
import re
import time

import numpy as np
import pandas as pd

from repo_index.core.embed.model import from_collection_metadata
from repo_index.core.embed.providers import make_embedder
from repo_index.core.index.client import ChromaSettings, get_collection, open_client, read_lock, write_lock
from repo_index.core.index.lexical import LexicalIndex, lexical_path
from repo_index.core.index.query import query_collection
from repo_index.core.index.sync import sync_collection
from repo_index.core.search import embed_query, search
from retrieval_index_cost import collection_chunks
from retrieval_metrics import latency_ms

REPO = "synthetic-100k"
KEEP = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"self", "cls"}
IDENTIFIER = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


def renamed(text: str, copy: int) -> str:
    if copy == 0:
        return text
    return IDENTIFIER.sub(lambda m: m.group(0) if m.group(0) in KEEP else f"{m.group(0)}_{copy}", text)


def synthetic_chunks(real: pd.DataFrame, n: int) -> pd.DataFrame:
    """`n` chunks made from the real chunk table: copy c of each chunk is under `copy<c>/`
    with its identifiers renamed."""
    rows = []
    records = real.to_dict("records")
    for j in range(n):
        copy, chunk = j // len(records), records[j % len(records)]
        body = renamed(chunk["text"], copy)
        path = f"copy{copy:03d}/{chunk['path']}"
        rows.append({**chunk, "chunk_id": hashlib.sha256(f"{path}:{j}".encode()).hexdigest()[:32], "path": path,
                     "symbol": renamed(chunk["symbol"], copy), "defines": renamed(chunk["defines"], copy),
                     "text": body, "content_hash": hashlib.sha256(body.encode()).hexdigest()})
    return pd.DataFrame(rows)


def random_unit_rows(dims: int, seed: int):
    def rows(indexes: list[int]) -> np.ndarray:
        m = np.random.default_rng([seed, indexes[0], len(indexes)]).standard_normal((len(indexes), dims))
        return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)
    return rows


def timed(fn, queries: list[str]) -> list[float]:
    fn(queries[0])  # warm: model loaded, collection opened
    seconds = []
    for q in queries:
        started = time.perf_counter()
        fn(q)
        seconds.append(time.perf_counter() - started)
    return seconds


def synthetic_latency(settings, real_repo: str, n_chunks: int, n_queries: int, query_texts: list[str],
                      seed: int) -> dict:
    chroma = ChromaSettings.from_settings(settings)
    with read_lock(chroma):
        real_meta = get_collection(open_client(chroma), chroma.collection_name(real_repo)).metadata or {}
    model = from_collection_metadata(real_meta, settings.openai_base_url)
    real = collection_chunks(settings, real_repo)
    chunks = synthetic_chunks(real, n_chunks)
    ids = list(chunks["chunk_id"])
    name = chroma.collection_name(REPO)
    started = time.perf_counter()
    with write_lock(chroma):
        sync_collection(open_client(chroma), name, chunks, ids, random_unit_rows(model.dimensions, seed), model,
                        "synthetic", REPO)
        vectors_s = time.perf_counter() - started
        lexical_dir = chroma.lexical_dir()
        if lexical_dir is not None:  # as vector_collection does it, after the vectors
            started = time.perf_counter()
            with LexicalIndex(lexical_path(lexical_dir, name)) as lexical:
                lexical.sync(chunks, ids)
    lexical_s = time.perf_counter() - started if lexical_dir is not None else None
    del chunks
    queries = random.Random(seed).sample(query_texts, min(n_queries, len(query_texts)))
    out = {"chunks": n_chunks, "copies_of_real_corpus": -(-n_chunks // len(real)), "queries": len(queries),
           "build_s": {"vectors": round(vectors_s, 1), "lexical": lexical_s and round(lexical_s, 1)},
           "search_ms": {}}
    with_mode = "mode" in inspect.signature(search).parameters
    for mode in (("vector", "lexical", "hybrid") if with_mode else ("vector",)):
        extra = {"mode": mode} if with_mode else {}
        out["search_ms"][mode] = latency_ms(timed(
            lambda q: search(q, repos=[REPO], k=10, settings=settings, **extra), queries))
    if not with_mode:
        out["note"] = "vector only: search() takes no `mode` yet"
    embedder = make_embedder(model, api_key=settings.api_key())
    out["query_embedding_ms_model_held"] = latency_ms(timed(lambda q: embed_query(embedder, q), queries))
    if hasattr(embedder, "encode"):  # the local model without the event loop and thread embed_query runs it in
        out["query_encode_ms_same_thread"] = latency_ms(timed(lambda q: embedder.encode([q]), queries))
    vectors = {q: embed_query(embedder, q) for q in queries}
    with read_lock(chroma):
        coll = get_collection(open_client(chroma), name)
        out["collection_query_ms"] = latency_ms(timed(lambda q: query_collection(coll, REPO, vectors[q], 10), queries))
    if lexical_dir is not None:
        with LexicalIndex(lexical_path(lexical_dir, name), create=False) as lexical:
            out["lexical_query_ms"] = latency_ms(timed(lambda q: lexical.search(q, 50), queries))
    return out
