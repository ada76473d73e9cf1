"""Where the embedding cache every worker shares should live (issue 19): PostgreSQL or Redis,
with the SQLite file of one machine as the baseline.

    .venv/bin/python bench/shared_cache.py                    # 20,000 x 1,536-d, batches of 1,000
    .venv/bin/python bench/shared_cache.py --vectors 5000     # quicker

Starts a real PostgreSQL and a real Redis on loopback (repo_index_tests/services.py: the
Debian packages `postgresql` and `redis-server`) and measures, on the same random float32
vectors keyed by sha256 as the pipeline keys them:

- `write`: vectors/s stored in batches of `--batch`, one transaction each, as the embedding
  loop's writer sends them (the product's `put_many`; for Redis, a pipelined HSET);
- `present`: keys/s answered "is it cached?" for every key (an unchanged reindex asks only that);
- `read`: vectors/s of a repository's matrix read back by key, keys shuffled, in the slices
  `vector_collection` reads (the product's `matrix`; for Redis, pipelined HMGET);
- `bytes_per_vector`: what the store holds per vector: the SQLite file (checkpointed), PostgreSQL's
  `pg_total_relation_size` of the vectors table (heap, TOAST, key index), Redis's
  `used_memory` grown (RAM: Redis holds everything in memory).

Redis here is a minimal comparable store (a hash per model and dimensions, key -> float32
bytes), not a product backend. Each figure is the median of `--repeats` passes on a fresh
store. Writes bench/results/shared_cache.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from repo_index.core.embed.cache import VectorCache  # noqa: E402
from repo_index.core.embed.cache.postgres import PostgresVectorCache  # noqa: E402
from repo_index_tests.cache_backends import new_database  # noqa: E402
from repo_index_tests.services import postgres_server, redis_server  # noqa: E402

MODEL = "text-embedding-3-small"
READ_SLICE = 5_000  # vectors per matrix read, about what vector_collection reads at a time


class RedisCache:
    """The comparable minimum on Redis: HSET / HMGET of key -> float32 bytes, pipelined."""

    def __init__(self, port: int):
        import redis

        self.client = redis.Redis(host="127.0.0.1", port=port)

    def _hash(self, model: str, dims: int) -> str:
        return f"vectors:{model}:{dims}"

    def put_many(self, model: str, dims: int, items) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self._hash(model, dims), mapping={k: np.ascontiguousarray(v, "<f4").tobytes() for k, v in items})
            pipe.execute()

    def present(self, model: str, dims: int, keys) -> set[bytes]:
        keys = list(keys)
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hexists(self._hash(model, dims), key)
            return {k for k, there in zip(keys, pipe.execute()) if there}

    def matrix(self, model: str, dims: int, keys: list[bytes]) -> np.ndarray:
        blobs = self.client.hmget(self._hash(model, dims), keys)
        if any(b is None for b in blobs):
            raise LookupError("missing vectors")
        return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(keys), dims)

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def close(self) -> None:
        self.client.flushall()
        self.client.close()


def workload(n: int, dims: int, seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    keys = [hashlib.sha256(f"chunk {i}".encode()).digest() for i in range(n)]
    return keys, np.random.default_rng(seed).standard_normal((n, dims), dtype=np.float32)


def measure(cache, keys: list[bytes], vectors: np.ndarray, batch: int, size_of) -> dict:
    dims = vectors.shape[1]
    before = size_of()
    started = time.perf_counter()
    for i in range(0, len(keys), batch):
        cache.put_many(MODEL, dims, zip(keys[i:i + batch], vectors[i:i + batch]))
    write_s = time.perf_counter() - started
    held = size_of() - before

    shuffled = list(np.random.default_rng(1).permutation(len(keys)))
    asked = [keys[i] for i in shuffled]
    started = time.perf_counter()
    found = sum(len(cache.present(MODEL, dims, asked[i:i + READ_SLICE])) for i in range(0, len(asked), READ_SLICE))
    present_s = time.perf_counter() - started
    assert found == len(keys)

    started = time.perf_counter()
    for i in range(0, len(asked), READ_SLICE):
        got = cache.matrix(MODEL, dims, asked[i:i + READ_SLICE])
        assert np.array_equal(got, vectors[shuffled[i:i + READ_SLICE]])  # bit-exact, in order
    read_s = time.perf_counter() - started
    return {"write_vectors_per_s": len(keys) / write_s, "present_keys_per_s": len(keys) / present_s,
            "read_vectors_per_s": len(keys) / read_s, "bytes_per_vector": held / len(keys)}


def sqlite_pass(folder: Path, keys, vectors, batch) -> dict:
    path = folder / f"bench-{time.monotonic_ns()}.sqlite"

    try:
        with VectorCache(path) as cache:
            def size() -> int:
                # The file once its write-ahead log is folded in (PostgreSQL's WAL is not counted either).
                cache._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return sum(p.stat().st_size for p in folder.glob(path.name + "*"))

            return measure(cache, keys, vectors, batch, size)
    finally:
        for p in folder.glob(path.name + "*"):
            p.unlink()


def postgres_pass(port: int, keys, vectors, batch) -> dict:
    url = new_database(port)
    with PostgresVectorCache(url) as cache:
        def size() -> int:
            return cache._sql.execute("SELECT pg_total_relation_size('vectors')").fetchone()[0]

        return measure(cache, keys, vectors, batch, size)


def redis_pass(port: int, keys, vectors, batch) -> dict:
    cache = RedisCache(port)
    try:
        return measure(cache, keys, vectors, batch, cache.used_memory)
    finally:
        cache.close()


def server_versions(pg_port: int, redis_port: int) -> dict:
    import psycopg2
    import redis

    db = psycopg2.connect(f"postgresql://dagster@127.0.0.1:{pg_port}/dagster")
    try:
        with db.cursor() as cur:
            cur.execute("SHOW server_version")
            postgres = cur.fetchone()[0]
    finally:
        db.close()
    client = redis.Redis(host="127.0.0.1", port=redis_port)
    try:
        return {"postgresql": postgres, "redis": client.info("server")["redis_version"]}
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "shared_cache.json")
    args = parser.parse_args()

    keys, vectors = workload(args.vectors, args.dims)
    runs: dict[str, list[dict]] = {"sqlite": [], "postgres": [], "redis": []}
    folder = Path(tempfile.mkdtemp(prefix="repo-index-bench-cache-"))
    try:
        with postgres_server() as pg_port, redis_server(folder) as redis_port:
            servers = server_versions(pg_port, redis_port)
            for _ in range(args.repeats):  # alternating, so a busy moment of the machine hits each
                runs["sqlite"].append(sqlite_pass(folder, keys, vectors, args.batch))
                runs["postgres"].append(postgres_pass(pg_port, keys, vectors, args.batch))
                runs["redis"].append(redis_pass(redis_port, keys, vectors, args.batch))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    results = {name: {field: statistics.median(r[field] for r in passes) for field in passes[0]}
               for name, passes in runs.items()}
    raw_bytes = 4 * args.dims
    print(f"{args.vectors:,} vectors of {args.dims} float32 ({raw_bytes:,} bytes each), batches of {args.batch:,}, "
          f"median of {args.repeats}")
    print(f"{'store':<10}{'write vec/s':>13}{'present keys/s':>16}{'read vec/s':>13}{'bytes/vector':>14}{'x raw':>7}")
    for name, r in results.items():
        print(f"{name:<10}{r['write_vectors_per_s']:>13,.0f}{r['present_keys_per_s']:>16,.0f}"
              f"{r['read_vectors_per_s']:>13,.0f}{r['bytes_per_vector']:>14,.0f}{r['bytes_per_vector'] / raw_bytes:>7.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), **servers},
        "config": {"vectors": args.vectors, "dims": args.dims, "batch": args.batch, "repeats": args.repeats,
                   "read_slice": READ_SLICE, "raw_bytes_per_vector": raw_bytes},
        "results": results, "passes": runs,
    }, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
