"""Benchmark of the embedding loop (`embed_chunks`, the code the asset runs) against the
loopback OpenAI-compatible server, with a fixed latency per request.

    .venv/bin/python bench/embedding.py                 # every scenario, 3 repetitions
    .venv/bin/python bench/embedding.py --reps 5 --only seed,rate_limited

Prints one JSON document and writes it to bench/results/embedding.json. Figures are
medians over the repetitions; each repetition embeds into a fresh SQLite cache, as a
first run of the asset does.

The server is `repo_index_tests.fakes.openai_server` in a separate process (sharing the
client's process, and so its GIL, would cap the client near 2k inputs/s). As the tests
use it, it spends ~150 µs of Python per input (bag-of-words vectors, stdlib json and
base64), so on a small machine the fake server's CPU, not the latency, would be the
bound. By default (`--server fast`) the server process answers with a row of a fixed
random table chosen by a hash of the text and encodes with orjson and pybase64: still
deterministic, so every vector the client receives is checked against the expected one.
`--server stock` keeps the fake exactly as the tests use it.

Next to each throughput figure the bench measures a transport floor: bare aiohttp (the
client's transport) posting the same batches with the same concurrency and reading the
answers undecoded. The limit
is what an ideal client reaches against an ideal server; the floor is what this server
on this machine allows any client; `wall_vs_floor` is what the loop itself costs.

Scenarios (the limit is `max_concurrent x batch_size / latency` chunks per second):
  seed          10,000 chunks, 300 ms, max_concurrent=10, batch_size=100: limit 3.0 s
  wide          50 ms, max_concurrent=32, batch_size=256 (1536 and 48 dimensions)
  rate_limited  the seed setting with 30% of requests answered 429, with an OpenAI-style
                `x-ratelimit-reset-requests` hint and bare; target: wall time within 2x
                of the seed run, every vector present and correct
  reindex       the stdlib corpus (every *.py of this Python's standard library but
                site-packages, test and idlelib) chunked and embedded, then chunked and
                embedded again unchanged (target: 0 requests), then with one function
                edited (requests only for the changed chunks)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pybase64

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "embedding.json"
TABLE_ROWS = 4096
MAX_DIMS = 3072


# -- the server process ---------------------------------------------------------------------


def _table() -> np.ndarray:
    rows = np.random.default_rng(20240601).standard_normal((TABLE_ROWS, MAX_DIMS)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def table_vector(table: np.ndarray, text: str, dims: int) -> np.ndarray:
    return table[zlib.crc32(text.encode()) % TABLE_ROWS, :dims]


class _FastJson:
    """The fake server's `json`, backed by orjson (its encoder is the server's hot spot)."""

    loads = staticmethod(orjson.loads)

    @staticmethod
    def dumps(obj) -> str:
        return orjson.dumps(obj).decode()


def serve(latency: float, server_kind: str) -> None:
    """Run the fake server; answer line commands on stdin (stats, reset, faults ...)."""
    from repo_index_tests.fakes import openai_server as fake

    if server_kind == "fast":
        table = _table()
        fake.fake_embedding = lambda text, dims=fake.DEFAULT_DIMENSIONS: table_vector(table, text, dims)
        fake.json, fake.base64 = _FastJson, pybase64
    server = fake.FakeOpenAIServer(latency=latency).start()
    print(server.base_url, flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "stats":
            print(json.dumps({"requests": server.requests_total, "ok": server.requests_ok,
                              "inputs": server.inputs_embedded, "max_in_flight": server.max_in_flight,
                              "status": {str(k): v for k, v in server.status_counts.items()}}), flush=True)
        elif cmd == "reset":
            server.clear_faults()
            server.reset_counters()
            print("ok", flush=True)
        elif cmd == "faults":  # faults P429 N SEED HINT: N queued answers, each a 429 with probability P
            p, n, seed, hint = float(args[0]), int(args[1]), int(args[2]), args[3]
            rng = random.Random(seed)
            headers = ({"x-ratelimit-reset-requests": hint, "x-ratelimit-remaining-requests": "0"}
                       if hint != "none" else {})
            server.add_faults(*[fake.Fault.status(429, headers=headers) if rng.random() < p
                                else fake.Fault.timeout(0.0) for _ in range(n)])  # timeout(0): a normal answer
            print("ok", flush=True)
    server.stop()


class Server:
    def __init__(self, latency: float, server_kind: str):
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", "--latency", str(latency),
                                      "--server", server_kind],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.base_url = self.proc.stdout.readline().strip()

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stats(self) -> dict:
        return json.loads(self.ask("stats"))

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the client ----------------------------------------------------------------------------


def synthetic_chunks(n: int, seed: int = 0) -> pd.DataFrame:
    """`n` distinct function-sized chunks of about 300 characters (~75 tokens)."""
    body = "    total = 0\n    for item in items:\n        if item.enabled and item.weight > {k}:\n" \
           "            total += item.weight * factor\n    return total + offset\n"
    rows = [(f"c{seed}-{i}", f"pkg/module_{i % 400}.py", "python", 1, 6, *[f"compute_{seed}_{i}"] * 3, 75,
             f"def compute_{seed}_{i}(items, factor, offset):\n" + body.format(k=i % 13), "") for i in range(n)]
    return pd.DataFrame(rows, columns=["chunk_id", "path", "language", "start_line", "end_line", "symbol",
                                       "defines", "header", "n_tokens", "text", "content_hash"])


def check_vectors(vectors: np.ndarray, dims: int, chunks: pd.DataFrame, table: np.ndarray | None) -> bool:
    from repo_index.core.chunk.records import embedding_text

    if vectors.shape != (len(chunks), dims) or vectors.dtype != np.float32:
        return False
    if table is None:
        return bool(np.isfinite(vectors).all())
    expected = np.vstack([table_vector(table, embedding_text(p, s, t), dims)
                          for p, s, t in zip(chunks["path"], chunks["header"], chunks["text"])])
    return bool(np.array_equal(vectors, expected))


def embed_once(server: Server, chunks: pd.DataFrame, max_concurrent: int, batch_size: int, dims: int | None,
               cache_dir: Path, table: np.ndarray | None) -> dict:
    """One first run as the asset makes it (`keep_vectors=False`: vectors go to the cache
    only); the vectors are read back from the cache and checked after the clock stops."""
    from repo_index.core.embed.loop import embed_chunks
    from repo_index.core.embed.providers import OpenAIEmbedder
    from repo_index.core.embed.cache import VectorCache

    embedder = OpenAIEmbedder(api_key="bench", base_url=server.base_url, requested_dimensions=dims)
    path = cache_dir / f"cache-{time.monotonic_ns()}.sqlite"
    with VectorCache(path) as cache:
        started = time.perf_counter()
        result = embed_chunks(chunks, embedder, cache, max_concurrent=max_concurrent, batch_size=batch_size,
                              owner="bench", keep_vectors=False)
        wall = time.perf_counter() - started
        correct = check_vectors(cache.matrix(result.model, result.dimensions, result.keys), result.dimensions,
                                chunks, table)
    path.unlink()
    s = result.stats
    return {"wall_s": wall, "loop_s": s.embed_seconds, "chunks_per_s": len(chunks) / wall,
            "requests": s.requests, "retries": s.retries, "rate_limited": s.rate_limited,
            "lowest_concurrency": s.lowest_concurrency, "peak_in_flight": s.peak_in_flight,
            "all_vectors_correct": correct}


def transport_floor(server: Server, chunks: pd.DataFrame, max_concurrent: int, batch_size: int,
                    dims: int | None) -> float:
    """Seconds for bare aiohttp (the client's transport, and the cheapest one here) to POST
    the same batches, `max_concurrent` at a time, and read the answers without decoding
    them: what this server and machine allow at best."""
    import asyncio

    import aiohttp

    from repo_index.core.chunk.records import embedding_text

    texts = [embedding_text(p, s, t) for p, s, t in zip(chunks["path"], chunks["header"], chunks["text"])]
    body = {"model": "text-embedding-3-small", "encoding_format": "base64", **({"dimensions": dims} if dims else {})}
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}

    async def run() -> float:
        slots = asyncio.Semaphore(max_concurrent)
        async with aiohttp.ClientSession(headers=headers) as client:
            async def post(i: int) -> None:
                async with slots:
                    data = orjson.dumps({**body, "input": texts[i:i + batch_size]})
                    async with client.post(f"{server.base_url}/embeddings", data=data) as response:
                        response.raise_for_status()
                        await response.read()

            started = time.perf_counter()
            await asyncio.gather(*[post(i) for i in range(0, len(texts), batch_size)])
            return time.perf_counter() - started

    return asyncio.run(run())


def median_of(runs: list[dict]) -> dict:
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        if isinstance(values[0], bool):
            out[key] = all(values)
        elif isinstance(values[0], (int, float)):
            out[key] = round(statistics.median(values), 4)
    return out


def throughput(name: str, n: int, latency: float, max_concurrent: int, batch_size: int, dims: int | None,
               reps: int, server_kind: str, cache_dir: Path) -> dict:
    table = _table() if server_kind == "fast" else None
    chunks = synthetic_chunks(n)
    limit = max_concurrent * batch_size / latency
    waves = -(-n // (max_concurrent * batch_size))
    with Server(latency, server_kind) as server:
        embed_once(server, synthetic_chunks(max_concurrent * batch_size, seed=99), max_concurrent, batch_size,
                   dims, cache_dir, None)  # warm up: imports, connections
        runs, floors = [], []
        for _ in range(reps):  # interleaved, so both see the same machine load
            runs.append(embed_once(server, chunks, max_concurrent, batch_size, dims, cache_dir, table))
            floors.append(transport_floor(server, chunks, max_concurrent, batch_size, dims))
        max_in_flight = server.stats()["max_in_flight"]
    m = median_of(runs)
    floor = statistics.median(floors)
    return {"scenario": name, "chunks": n, "latency_s": latency, "max_concurrent": max_concurrent,
            "batch_size": batch_size, "dimensions": dims or 1536, "limit_chunks_per_s": limit,
            "limit_wall_s": waves * latency, **m, "of_limit": round(m["chunks_per_s"] / limit, 3),
            "transport_floor_s": round(floor, 4), "floor_of_limit": round(waves * latency / floor, 3),
            "wall_vs_floor": round(m["wall_s"] / floor, 3), "loop_vs_floor": round(m["loop_s"] / floor, 3),
            "server_max_in_flight": max_in_flight, "runs_wall_s": [round(r["wall_s"], 3) for r in runs],
            "runs_floor_s": [round(f, 3) for f in floors]}


def rate_limited(clean: dict, reps: int, server_kind: str, cache_dir: Path) -> list[dict]:
    table = _table() if server_kind == "fast" else None
    n, latency, mc, bs = clean["chunks"], clean["latency_s"], clean["max_concurrent"], clean["batch_size"]
    chunks = synthetic_chunks(n)
    out = []
    for hint in ("100ms", "none"):
        with Server(latency, server_kind) as server:
            embed_once(server, synthetic_chunks(mc * bs, seed=99), mc, bs, None, cache_dir, None)
            runs = []
            for rep in range(reps):
                server.ask("reset")
                server.ask(f"faults 0.3 2000 {rep} {hint}")
                run = embed_once(server, chunks, mc, bs, None, cache_dir, table)
                stats = server.stats()
                run["server_requests"], run["server_429"] = stats["requests"], stats["status"].get("429", 0)
                runs.append(run)
        m = median_of(runs)
        out.append({"scenario": f"rate_limited_30pct_{'hinted' if hint != 'none' else 'bare'}",
                    "hint": f"x-ratelimit-reset-requests: {hint}" if hint != "none" else "none (backoff only)",
                    "chunks": n, **m, "vs_clean": round(m["wall_s"] / clean["wall_s"], 3),
                    "runs_wall_s": [round(r["wall_s"], 3) for r in runs]})
    return out


def copy_corpus(corpus: str, dest: Path) -> Path:
    """The stdlib corpus (every `*.py` of this Python's standard library but site-packages,
    test and idlelib, as bench/pipeline.py builds it), or a copy of the folder given."""
    if corpus != "stdlib":
        shutil.copytree(corpus, dest, ignore=shutil.ignore_patterns("__pycache__", ".git"))
        return dest
    base = Path(sysconfig.get_paths()["stdlib"])
    for path in base.rglob("*.py"):
        rel = path.relative_to(base)
        if rel.parts[0] not in ("site-packages", "test", "idlelib"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / rel)
    return dest


def reindex(corpus: str, server_kind: str, cache_dir: Path) -> dict:
    from repo_index.core.embed.loop import embed_chunks
    from repo_index.core.embed.providers import OpenAIEmbedder
    from repo_index.core.chunk.repository import chunk_repository
    from repo_index.core.embed.cache import VectorCache

    work = copy_corpus(corpus, Path(tempfile.mkdtemp(dir=cache_dir)) / "corpus")
    out: dict = {"scenario": "reindex", "corpus": corpus, "files": sum(1 for _ in work.rglob("*.py"))}
    with Server(0.0, server_kind) as server, VectorCache(cache_dir / "reindex.sqlite") as cache:
        def run(label: str) -> pd.DataFrame:
            chunks = chunk_repository(work, max_tokens=512)
            server.ask("reset")
            started = time.perf_counter()
            result = embed_chunks(chunks, OpenAIEmbedder(api_key="bench", base_url=server.base_url), cache,
                                  owner="stdlib", max_concurrent=10, batch_size=100)
            stats = server.stats()
            out[label] = {"chunks": len(chunks), "requests": stats["requests"], "inputs_sent": stats["inputs"],
                          "reused": result.stats.reused, "embedded": result.stats.embedded,
                          "pruned": result.stats.pruned, "embed_seconds": round(time.perf_counter() - started, 3)}
            print(json.dumps({label: out[label]}), file=sys.stderr)
            return chunks

        before = run("first")
        run("unchanged")
        target = _edit_one_function(work)
        after = run("one_function_edited")
        out["one_function_edited"]["edited"] = target
        out["one_function_edited"]["chunks_changed"] = len(set(after["content_hash"]) - set(before["content_hash"]))
    shutil.rmtree(work.parent)
    return out


def _edit_one_function(root: Path) -> str:
    """Add a statement to the first function of the largest module that has one; returns where."""
    import ast

    for path in sorted(root.rglob("*.py"), key=lambda p: (-p.stat().st_size, p)):
        source = path.read_text()
        fn = next((n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)), None)
        if fn is not None:
            break
    lines = source.splitlines(keepends=True)
    first = fn.body[0]
    indent = " " * first.col_offset
    lines.insert(first.lineno - 1, f"{indent}_edited_by_bench = True\n")
    path.write_text("".join(lines))
    return f"{path.relative_to(root)}:{fn.name}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--only", default="seed,wide,rate_limited,reindex")
    p.add_argument("--server", choices=["fast", "stock"], default="fast",
                   help="fast: table vectors, orjson and pybase64 in the fake server (see the docstring)")
    p.add_argument("--corpus", default="stdlib", help="'stdlib' (default) or a folder to copy and index")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--latency", type=float, default=0.0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve:
        return serve(a.latency, a.server)

    for name, value in {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(name, value)
    only = set(a.only.split(","))
    results: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                 "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
                     "reps": a.reps, "server": a.server, "scenarios": []}
    with tempfile.TemporaryDirectory(prefix="bench-embedding-") as tmp:
        cache_dir = Path(tmp)
        seed = None
        if only & {"seed", "rate_limited"}:
            seed = throughput("seed", 10_000, 0.3, 10, 100, None, a.reps, a.server, cache_dir)
            results["scenarios"].append(seed)
            print(json.dumps(seed), file=sys.stderr)
        if "wide" in only:
            for dims, n in ((1536, 32 * 256 * 4), (48, 32 * 256 * 20)):
                r = throughput(f"wide_{dims}d", n, 0.05, 32, 256, dims, a.reps, a.server, cache_dir)
                results["scenarios"].append(r)
                print(json.dumps(r), file=sys.stderr)
        if "rate_limited" in only:
            for r in rate_limited(seed, a.reps, a.server, cache_dir):
                results["scenarios"].append(r)
                print(json.dumps(r), file=sys.stderr)
        if "reindex" in only:
            r = reindex(a.corpus, a.server, cache_dir)
            results["scenarios"].append(r)
            print(json.dumps(r), file=sys.stderr)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
