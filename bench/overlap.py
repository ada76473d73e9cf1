"""Would writing vectors to Chroma while they arrive shorten a full index? (issue 20)

    .venv/bin/python bench/overlap.py                 # stdlib packages, 50 ms per request
    .venv/bin/python bench/overlap.py --packages json logging --latency 0.2

A full index runs chunk -> embed -> write in turn. With a remote provider the embedding
step mostly waits on the network, so its wall time could hide under the write's CPU time.
This measures, on the same chunks and in the same run (alternating, medians):

- `sequential`: embed everything (the project's embed loop, 10 requests in flight, the
  loopback OpenAI-compatible server, in a process of its own, answering each request after
  `--latency` seconds, no cache), then sync the collection (the project's
  `sync_collection`, as the asset calls it);
- `overlapped`: the same two calls on slices of the chunks, the slice i+1 being embedded
  in one thread while slice i is written in another (streaming at slice granularity);

and reports each one's wall and CPU seconds, the embedding step's CPU share of its wall
time (what the overlap can use), and the saving. Writes bench/results/overlap.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from repo_index.core.chunk.records import embedding_text  # noqa: E402
from repo_index.core.chunk.repository import chunk_repository  # noqa: E402
from repo_index.core.embed.loop import embed_chunks  # noqa: E402
from repo_index.core.embed.providers import OpenAIEmbedder  # noqa: E402
from repo_index.core.index.client import ChromaSettings, open_client, write_lock  # noqa: E402
from repo_index.core.index.sync import WRITE_BATCH, record_metadata, sync_collection  # noqa: E402

DEFAULT_PACKAGES = ("email", "http", "json", "logging", "asyncio", "xml", "unittest", "importlib", "multiprocessing",
                    "tkinter", "idlelib", "lib2to3", "ctypes", "concurrent", "urllib", "xmlrpc", "sqlite3", "encodings")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def corpus(packages: tuple[str, ...], dest: Path) -> pd.DataFrame:
    stdlib = Path(os.__file__).parent
    for name in packages:
        shutil.copytree(stdlib / name, dest / name, ignore=shutil.ignore_patterns("test*", "__pycache__"))
    table = chunk_repository(dest, max_tokens=512, parallel=False)
    table["embedding_text"] = [embedding_text(p, h, t) for p, h, t in zip(table["path"], table["header"], table["text"])]
    return table


def embed(table: pd.DataFrame, base_url: str) -> tuple[list[str], np.ndarray]:
    embedder = OpenAIEmbedder(model="text-embedding-3-small", api_key="sk-bench", base_url=base_url)
    result = embed_chunks(table, embedder, None, max_concurrent=10)
    return result.chunk_ids, result.vectors


def write(chroma: ChromaSettings, name: str, table: pd.DataFrame, ids: list[str], vectors: np.ndarray,
          model) -> None:
    with write_lock(chroma):
        sync_collection(open_client(chroma), name, table, ids, vectors, model, "bench", name, store_text=False)


def sequential(table, base_url, chroma, name, model) -> dict:
    t0, c0 = time.perf_counter(), cpu_s()
    ids, vectors = embed(table, base_url)
    t1, c1 = time.perf_counter(), cpu_s()
    write(chroma, name, table, ids, vectors, model)
    t2, c2 = time.perf_counter(), cpu_s()
    return {"wall_s": t2 - t0, "cpu_s": c2 - c0, "embed_wall_s": t1 - t0, "embed_cpu_s": c1 - c0,
            "write_wall_s": t2 - t1, "write_cpu_s": c2 - c1}


def overlapped(table, base_url, chroma, name, model, slices: int) -> dict:
    """Slice i+1 embedded while slice i is written: the first slice by the sync (which
    creates the collection), each later one added as a streaming writer would."""
    bounds = np.linspace(0, len(table), slices + 1).astype(int)
    parts = [table.iloc[a:b].reset_index(drop=True) for a, b in zip(bounds, bounds[1:])]
    t0, c0 = time.perf_counter(), cpu_s()
    ready: list = [None] * len(parts)

    def embed_all():
        for i, part in enumerate(parts):
            ready[i] = embed(part, base_url)
            events[i].set()

    events = [threading.Event() for _ in parts]
    producer = threading.Thread(target=embed_all)
    producer.start()
    for i, part in enumerate(parts):
        events[i].wait()
        ids, vectors = ready[i]
        if i == 0:  # the sync creates the collection...
            write(chroma, name, part, ids, vectors, model)
            continue
        with write_lock(chroma):  # ...then each slice's records are added as they come
            coll = open_client(chroma).get_collection(name)
            for a in range(0, len(ids), WRITE_BATCH):
                rows = list(part.iloc[a:a + WRITE_BATCH].itertuples(index=False))
                coll.add(ids=ids[a:a + WRITE_BATCH], embeddings=vectors[a:a + WRITE_BATCH],
                         metadatas=[record_metadata(r.path, r.language) for r in rows])
    producer.join()
    return {"wall_s": time.perf_counter() - t0, "cpu_s": cpu_s() - c0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--packages", nargs="+", default=list(DEFAULT_PACKAGES))
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server takes per request")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slices", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="overlap-"))
    try:
        table = corpus(tuple(args.packages), work / "src")
        print(f"{len(table)} chunks from {table['path'].nunique()} files")
        runs: dict[str, list[dict]] = {"sequential": [], "overlapped": []}
        # The server in its own process: its work is not this process's CPU, as a remote
        # provider's is not (it still shares this machine's cores).
        fake = subprocess.Popen([sys.executable, "-m", "repo_index_tests.fakes.openai_server", "--port", "0",
                                 "--latency", str(args.latency)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        server = SimpleNamespace(base_url=fake.stdout.readline().strip())
        try:
            model = OpenAIEmbedder(model="text-embedding-3-small", api_key="sk-bench", base_url=server.base_url).info
            warm = ChromaSettings(path=str(work / "chroma-warm"), state_dir=str(work / "spans-warm"))
            sequential(table, server.base_url, warm, "bench", model)  # imports and first connections: not timed
            for r in range(args.repeats):
                for kind in (("sequential", "overlapped") if r % 2 == 0 else ("overlapped", "sequential")):
                    chroma = ChromaSettings(path=str(work / f"chroma-{kind}-{r}"),
                                            state_dir=str(work / f"spans-{kind}-{r}"))
                    if kind == "sequential":
                        result = sequential(table, server.base_url, chroma, "bench", model)
                    else:
                        result = overlapped(table, server.base_url, chroma, "bench", model, args.slices)
                    count = open_client(chroma).get_collection("bench").count()
                    assert count == len(table), f"{kind} left {count} records of {len(table)}"
                    runs[kind].append(result)
                    print(f"  {kind:10} wall {result['wall_s']:6.1f} s  cpu {result['cpu_s']:6.1f} s")
        finally:
            fake.terminate()
            fake.wait()
        med = {kind: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for kind, rs in runs.items()}
        seq, ovl = med["sequential"], med["overlapped"]
        report = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "load_avg": os.getloadavg()},
            "chunks": len(table), "latency_s": args.latency, "slices": args.slices, "repeats": args.repeats,
            "medians": med,
            "embed_cpu_share_of_wall": seq["embed_cpu_s"] / seq["embed_wall_s"],
            "saving_s": seq["wall_s"] - ovl["wall_s"],
            "overlapped_fraction_of_sequential": ovl["wall_s"] / seq["wall_s"],
        }
        print(f"\nsequential  {seq['wall_s']:.1f} s (embed {seq['embed_wall_s']:.1f} s at "
              f"{report['embed_cpu_share_of_wall']:.0%} CPU, write {seq['write_wall_s']:.1f} s)")
        print(f"overlapped  {ovl['wall_s']:.1f} s: {report['overlapped_fraction_of_sequential']:.2f} of sequential")
        out = ROOT / "bench" / "results" / "overlap.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
