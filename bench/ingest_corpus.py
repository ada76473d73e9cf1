"""The vectors bench/ingest.py writes: real embeddings of a real corpus, cached on disk.

Packages of this Python's standard library and its top-level modules, docstrings stripped
(bench/retrieval_corpus.py), chunked by the project's chunker and embedded by the local model (all-MiniLM-L6-v2, 384
dimensions), as `repo-index index` would. The queries are real query embeddings: the first
sentence of each function's docstring (removed from the corpus, so no query finds its own
text). Embedding ~20,000 chunks costs minutes on two cores, so the chunk table, the
document matrix and the query matrix are kept in a temporary folder keyed by the packages,
the model and the Python version; a second run reads them back.
"""

from __future__ import annotations

import hashlib
import pickle
import random
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from retrieval_corpus import build_corpus, make_queries, strip_docstrings

from repo_index.core.chunk.records import embedding_text
from repo_index.core.chunk.repository import chunk_repository
from repo_index.core.embed.model import EmbeddingModel, resolve_model
from repo_index.core.embed.providers import make_embedder

# With every top-level module, about 18,000 chunks at the local model's 200-token budget.
PACKAGES = ("asyncio", "email", "logging", "http", "xml", "concurrent", "importlib", "urllib", "multiprocessing",
            "unittest", "json", "tkinter", "lib2to3", "distutils", "ctypes", "idlelib", "collections",
            "sqlite3", "ensurepip", "wsgiref", "dbm", "curses", "encodings", "pydoc_data", "turtledemo", "venv",
            "zoneinfo", "re", "tomllib", "html", "xmlrpc")
CACHE = Path(tempfile.gettempdir()) / "repo_index_bench_ingest"
ENCODE_BATCH = 256


@dataclass
class Corpus:
    model: EmbeddingModel
    chunks: pd.DataFrame  # the chunk table, as code_chunks holds it
    vectors: np.ndarray  # float32, unit rows, row i for chunks.chunk_id[i]
    queries: np.ndarray  # float32, unit rows: docstring sentences embedded as queries
    embed_seconds: float  # what embedding cost when the cache was filled


def _key(packages: tuple[str, ...], model: EmbeddingModel, limit: int | None = None) -> str:
    text = "|".join([*packages, model.name, str(model.dimensions), sys.version.split()[0]]
                    + ([f"first {limit}"] if limit is not None else []))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_corpus(packages: tuple[str, ...] = PACKAGES, n_queries: int = 500, limit: int | None = None,
                log=print) -> Corpus:
    """The corpus, its first `limit` chunks if given (embedding only those when no cache
    holds them: the local model embeds about 20 chunks/s here)."""
    model = resolve_model("local")
    for key in ([_key(packages, model)] if limit is None else [_key(packages, model), _key(packages, model, limit)]):
        if (CACHE / key / "corpus.pkl").exists():
            with open(CACHE / key / "corpus.pkl", "rb") as f:
                chunks, seconds = pickle.load(f)
            vectors, queries = np.load(CACHE / key / "vectors.npy"), np.load(CACHE / key / "queries.npy")
            return Corpus(model, chunks.iloc[:limit].reset_index(drop=True), vectors[:limit], queries[:n_queries],
                          seconds)
    folder = CACHE / _key(packages, model, limit)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ingest-corpus-") as tmp:
        corpus = build_corpus(Path(tmp), packages)
        _copy_top_level_modules(Path(tmp) / "top_level")
        chunks = chunk_repository(tmp, max_tokens=model.default_max_tokens, max_workers=2)
    # A seeded sample when limited, so a few thousand chunks still span the packages (a
    # full cache is cut to its first rows instead: those are no sample, but cost nothing).
    if limit is not None and limit < len(chunks):
        chunks = chunks.sample(n=limit, random_state=20).reset_index(drop=True)
    sentences = sorted({q.text for q in make_queries(corpus)[0] if q.kind == "description"})
    sentences = random.Random(20).sample(sentences, min(2000, len(sentences)))
    embedder = make_embedder(model)
    texts = [embedding_text(p, h, t) for p, h, t in zip(chunks["path"], chunks["header"], chunks["text"])]
    log(f"embedding {len(texts):,} chunks and {len(sentences):,} queries with {model.name} (cached in {folder})")
    started = time.perf_counter()
    vectors = np.vstack([embedder.encode(texts[i:i + ENCODE_BATCH]) for i in range(0, len(texts), ENCODE_BATCH)])
    seconds = time.perf_counter() - started
    queries = embedder.encode(sentences, kind="query")
    np.save(folder / "vectors.npy", vectors)
    np.save(folder / "queries.npy", queries)
    with open(folder / "corpus.pkl", "wb") as f:  # last: its presence says the cache is whole
        pickle.dump((chunks, seconds), f)
    return Corpus(model, chunks, vectors, queries[:n_queries], seconds)


def _copy_top_level_modules(dest: Path) -> None:
    """The standard library's top-level modules, docstrings stripped (the queries come from
    the packages' functions; these add chunks of the same kind of code)."""
    dest.mkdir()
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            (dest / path.name).write_text(strip_docstrings(path.read_text(encoding="utf-8"))[0], encoding="utf-8")
        except (UnicodeDecodeError, SyntaxError, ValueError):
            continue  # a file the stripper cannot rewrite faithfully: left out, as build_corpus does


def random_unit_rows(n: int, dims: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dims), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row indexes of each query's k nearest vectors by cosine (rows are unit length)."""
    scores = queries @ vectors.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)
