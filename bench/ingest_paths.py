"""One measured build for bench/ingest.py, run in a process of its own so that its peak RSS
and CPU time are its own: the raw HNSW floor (the `hnswlib` package, built for this CPU)
or the project's write path (`sync_collection` into a fresh embedded Chroma, under the
write lock as `vector_collection` takes it, then the lexical index as the asset syncs it).

    python bench/ingest_paths.py VARIANT_JSON DIMS N_VECTORS N_QUERIES

prints one JSON object: wall and CPU seconds of the build, peak RSS, bytes on disk, and
recall@10 against exact search (numpy brute force over the same vectors).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from ingest_corpus import exact_top_k, load_corpus, random_unit_rows  # noqa: E402

K = 10
# Chroma's defaults (chromadb/api/collection_configuration.py, populate_create_hnsw_defaults).
CHROMA_M, CHROMA_EF_CONSTRUCTION, CHROMA_EF_SEARCH = 16, 100, 100


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def disk_bytes(path: Path) -> int:
    """Bytes allocated on disk (sparse or preallocated files counted as the disk holds them)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files)


def recall(found: list[list[int]], vectors: np.ndarray, queries: np.ndarray) -> float:
    """Recall@K against exact search, counting a hit as found when it is as near as the
    exact K-th (the corpus holds identical chunks: which of two equal vectors is returned is
    no error)."""
    exact = exact_top_k(vectors, queries, K)
    kth = np.einsum("ij,ij->i", queries, vectors[exact[:, -1]])
    hits = [np.sum(vectors[f] @ q >= t - 1e-5) if f else 0 for f, q, t in zip(found, queries, kth)]
    return float(np.mean(np.minimum(hits, K)) / K)


def build_hnswlib(variant: dict, vectors: np.ndarray, queries: np.ndarray, work: Path) -> dict:
    import hnswlib

    started, cpu = time.perf_counter(), cpu_seconds()
    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=variant.get("M", CHROMA_M),
                     ef_construction=variant.get("ef_construction", CHROMA_EF_CONSTRUCTION))
    index.add_items(vectors, np.arange(len(vectors)), num_threads=variant["threads"])
    index.save_index(str(work / "index.bin"))
    out = {"wall_s": time.perf_counter() - started, "cpu_s": cpu_seconds() - cpu}
    index.set_ef(CHROMA_EF_SEARCH)
    labels, _ = index.knn_query(queries, k=K, num_threads=1)
    out["found"] = labels.tolist()
    out["disk_bytes"] = disk_bytes(work / "index.bin")
    return out


def build_chroma(variant: dict, corpus, vectors: np.ndarray, queries: np.ndarray, work: Path) -> dict:
    from repo_index.core.index import sync
    from repo_index.core.index.client import ChromaSettings, open_client, write_lock
    from repo_index.core.index.lexical import LexicalIndex, lexical_path

    # A variant names what it changes from the code as it is: write batch, HNSW configuration.
    if "write_batch" in variant:
        sync.WRITE_BATCH = variant["write_batch"]
    if "hnsw" in variant:
        sync.HNSW_CONFIGURATION = variant["hnsw"]
    if variant.get("eight_keys"):  # records as syncs wrote them before 2026-11-27: lines, names, hash, commit
        rows = {(r.path, r.language): r for r in corpus.chunks.itertuples(index=False)}  # one row per path: the sizes
        sync.record_metadata = lambda path, language: {
            "path": path, "start_line": int(rows[path, language].start_line),
            "end_line": int(rows[path, language].end_line), "symbol": rows[path, language].symbol,
            "defines": rows[path, language].defines, "language": language,
            "content_hash": rows[path, language].content_hash, "commit": "bench"}
    if variant.get("upsert"):  # Chroma's upsert in place of add
        from chromadb.api.models.Collection import Collection
        Collection.add = Collection.upsert
    chunks = corpus.chunks.iloc[:len(vectors)].reset_index(drop=True)
    ids = chunks["chunk_id"].tolist()
    model = corpus.model if vectors.shape[1] == corpus.model.dimensions else replace(
        corpus.model, name="random-unit-vectors", dimensions=vectors.shape[1])
    settings = ChromaSettings(path=str(work / "chroma"))
    name = settings.collection_name("bench")
    started, cpu = time.perf_counter(), cpu_seconds()
    with write_lock(settings):
        client = open_client(settings)
        sync.sync_collection(client, name, chunks, ids, vectors, model, "bench", "bench",
                             store_text=variant.get("store_text", False))
    out = {"wall_s": time.perf_counter() - started, "cpu_s": cpu_seconds() - cpu}
    if variant.get("lexical"):
        started, cpu = time.perf_counter(), cpu_seconds()
        with LexicalIndex(lexical_path(work / "lexical", name)) as lexical:
            lexical.sync(chunks, ids)
        out["lexical_wall_s"], out["lexical_cpu_s"] = time.perf_counter() - started, cpu_seconds() - cpu
        out["lexical_disk_bytes"] = disk_bytes(work / "lexical")
    collection = client.get_collection(name)
    out["configuration"] = {k: v for k, v in (collection.configuration.get("hnsw") or {}).items()}
    row = {cid: i for i, cid in enumerate(ids)}
    found = []
    for i in range(0, len(queries), 100):
        got = collection.query(query_embeddings=queries[i:i + 100], n_results=K, include=[])
        found += [[row[cid] for cid in hit] for hit in got["ids"]]
    out["found"] = found
    out["disk_bytes"] = disk_bytes(work / "chroma")
    return out


def main() -> None:
    variant, dims, n, n_queries = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    corpus = load_corpus(n_queries=n_queries, limit=n)
    if dims == corpus.model.dimensions:
        vectors, queries = corpus.vectors[:n], corpus.queries[:n_queries]
    else:  # the table: random unit vectors of another size
        vectors, queries = random_unit_rows(n, dims, 1), random_unit_rows(n_queries, dims, 2)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        if variant["path"] == "hnswlib":
            out = build_hnswlib(variant, vectors, queries, Path(tmp))
        else:
            out = build_chroma(variant, corpus, vectors, queries, Path(tmp))
    out["recall_at_10"] = recall(out.pop("found"), vectors, queries)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_before_build_mb"] = rss_before / 1024
    out["vectors"], out["pid"] = len(vectors), os.getpid()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
