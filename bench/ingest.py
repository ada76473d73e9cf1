"""Ingest benchmark: the project's Chroma write path against the raw HNSW floor.

    .venv/bin/python bench/ingest.py              # ~18,000 real 384-d vectors, 3 interleaved repeats
    .venv/bin/python bench/ingest.py --quick      # 5,000 vectors, 2 repeats (what `make bench` runs)
    .venv/bin/python bench/ingest.py --dims 384,1536 --variants floor,project
    .venv/bin/python bench/ingest.py --variants all   # every candidate setting tried for issue 20

Vectors are real embeddings (bench/ingest_corpus.py: standard-library code chunked by the
project's chunker and embedded by the local model, cached in a temporary folder) and the
queries real query embeddings (docstring sentences); `--dims 1536` adds random unit vectors
of that size, as the issue's first table used. Each variant is built in a process of its
own (bench/ingest_paths.py), the variants in turn and the turn repeated, so a change of the
machine's load falls on all of them; figures are medians. Per variant: vectors/s, CPU
seconds (every thread), vectors per CPU-second, peak RSS, bytes on disk and recall@10
against exact search (numpy brute-force cosine).

The floor is the `hnswlib` package built for this CPU (its sdist compiles with
-march=native) with Chroma's defaults: cosine, M=16, ef_construction=100, queried at
ef=100. The project's write path is `sync_collection` as the `vector_collection` asset
calls it (no documents: the lexical index holds the text), into a fresh embedded Chroma
under the write lock; the lexical index's sync is timed after it, as the asset runs it,
and reported apart. `write_path_fraction_of_floor` is the write path's vectors/s over the
2-thread floor's, same run: at 1,536 dimensions when measured (the issue's own figure's
size), else at 384; every size's under `fractions`. Writes bench/results/ingest.json and
prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "ingest.json"
MAX_LOAD = 1.5
QUICK_VECTORS = 5000

# main before issue 20's write-path work: batches of 1,000, Chroma's HNSW defaults, and
# records of eight metadata keys (lines, names, content hash, commit: now the lexical index's).
BEFORE = {"write_batch": 1000, "hnsw": {"space": "cosine"}, "eight_keys": True}
# The sync as it is but for ef_construction, Chroma's default (100) before 2026-11-27.
HNSW_DEFAULTS = {"space": "cosine"}
VARIANTS = {
    "floor": {
        "hnswlib, 2 threads": {"path": "hnswlib", "threads": 2},
        "hnswlib, 1 thread": {"path": "hnswlib", "threads": 1},
    },
    "before": {
        "sync, documents stored (before)": {"path": "chroma", "store_text": True, **BEFORE},
        "sync, no documents, eight keys": {"path": "chroma", **BEFORE},
    },
    "project": {
        "project's write path (this tree)": {"path": "chroma", "lexical": True},
    },
    # Settings tried on the way (issue 20); `--variants all` measures them again.
    "candidates": {
        "batches of 5,000": {"path": "chroma", "write_batch": 5000},
        "batches of 5,000, sync_threshold=5,000": {
            "path": "chroma", "write_batch": 5000, "hnsw": {"space": "cosine", "sync_threshold": 5000}},
        "batches of 5,000, sync_threshold=100": {
            "path": "chroma", "write_batch": 5000, "hnsw": {"space": "cosine", "sync_threshold": 100}},
        "num_threads=1": {"path": "chroma", "hnsw": {**HNSW_DEFAULTS, "num_threads": 1}},
        "upsert in place of add": {"path": "chroma", "upsert": True},
        "ef_construction=50": {"path": "chroma", "hnsw": {**HNSW_DEFAULTS, "ef_construction": 50}},
        "ef_construction=100 (Chroma's default)": {"path": "chroma", "hnsw": HNSW_DEFAULTS},
        "max_neighbors=12": {"path": "chroma", "hnsw": {**HNSW_DEFAULTS, "max_neighbors": 12}},
    },
}
DEFAULT_GROUPS = ("floor", "before", "project")
FLOOR_NAME, PROJECT_NAME = "hnswlib, 2 threads", "project's write path (this tree)"


def wait_for_quiet(log=print) -> float:
    """The 1-minute load average once it is at most MAX_LOAD (or after two minutes)."""
    for _ in range(24):
        load = os.getloadavg()[0]
        if load <= MAX_LOAD:
            return load
        log(f"  load average {load:.2f} > {MAX_LOAD}: waiting")
        time.sleep(5)
    return os.getloadavg()[0]


def run_variant(variant: dict, dims: int, n: int, n_queries: int) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "ingest_paths.py"), json.dumps(variant), str(dims),
                           str(n), str(n_queries)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"variant {variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(runs: list[dict]) -> dict:
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    n = runs[0]["vectors"]
    out = {"vectors": n, "runs": len(runs), "wall_s": round(med("wall_s"), 2), "cpu_s": round(med("cpu_s"), 2),
           "vectors_per_s": round(n / med("wall_s")), "vectors_per_cpu_s": round(n / med("cpu_s")),
           "peak_rss_mb": round(med("peak_rss_mb")), "disk_mb": round(med("disk_bytes") / 2**20, 1),
           "recall_at_10": round(med("recall_at_10"), 4), "load_average": [r["load"] for r in runs]}
    if "lexical_wall_s" in runs[0]:
        lex = statistics.median(r["lexical_wall_s"] for r in runs)
        out.update(lexical_wall_s=round(lex, 2), lexical_cpu_s=round(med("lexical_cpu_s"), 2),
                   lexical_disk_mb=round(med("lexical_disk_bytes") / 2**20, 1),
                   vectors_per_s_with_lexical=round(n / (med("wall_s") + lex)))
    if "configuration" in runs[0]:
        out["hnsw_configuration"] = runs[0]["configuration"]
    return out


def measure(variants: dict[str, dict], dims: int, n: int, n_queries: int, reps: int, log=print) -> dict:
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:  # each repeat starts elsewhere
            load = wait_for_quiet(log)
            result = run_variant(variants[name], dims, n, n_queries)
            result["load"] = round(load, 2)
            runs[name].append(result)
            log(f"  {dims}-d rep {rep + 1}/{reps} {name}: {n / result['wall_s']:,.0f} vectors/s, "
                f"recall@10 {result['recall_at_10']:.3f}")
    return {name: summarize(r) for name, r in runs.items()}


def table(results: dict, dims: int) -> str:
    head = (f"{'path (' + str(dims) + '-d)':44} {'vectors/s':>9} {'vec/CPU-s':>9} {'CPU s':>6} {'RSS MB':>6} "
            f"{'disk MB':>7} {'R@10':>6}")
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        lines.append(f"{name:44} {r['vectors_per_s']:>9,} {r['vectors_per_cpu_s']:>9,} {r['cpu_s']:>6.1f} "
                     f"{r['peak_rss_mb']:>6,} {r['disk_mb']:>7.1f} {r['recall_at_10']:>6.3f}")
        if "lexical_wall_s" in r:
            lines.append(f"{'  + lexical index sync (' + str(r['lexical_wall_s']) + ' s)':44} "
                         f"{r['vectors_per_s_with_lexical']:>9,}")
    return "\n".join(lines)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "chromadb": version("chromadb"), "hnswlib": version("hnswlib")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_VECTORS:,} vectors, 200 queries, 2 repeats (a first run embeds only those)")
    parser.add_argument("--vectors", type=int, default=0, help="vectors written (default: the whole corpus)")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dims", default="384", help="384 (real embeddings) and/or 1536 (random), comma-separated")
    parser.add_argument("--variants", default=",".join(DEFAULT_GROUPS),
                        help=f"groups of {sorted(VARIANTS)} or 'all', comma-separated; or names of variants, ';'-separated")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    groups = list(VARIANTS) if args.variants == "all" else args.variants.split(";" if ";" in args.variants else ",")
    variants = {name: v for g in groups for name, v in VARIANTS.get(g, {g: None}).items()}
    for name in [n for n, v in variants.items() if v is None]:  # a single candidate named
        variants[name] = next(group[name] for group in VARIANTS.values() if name in group)
    from ingest_corpus import load_corpus

    corpus = load_corpus(n_queries=args.queries, limit=args.vectors or (QUICK_VECTORS if args.quick else None))
    n = len(corpus.vectors)
    n_queries, reps = (200, 2) if args.quick else (args.queries, args.reps)
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
           "corpus": {"chunks": len(corpus.chunks), "model": corpus.model.name, "queries": n_queries,
                      "embedding_seconds_when_cached": round(corpus.embed_seconds, 1)},
           "vectors": n, "reps": reps, "load_average_start": os.getloadavg()[0], "results": {}}
    started = time.perf_counter()
    for dims in (int(d) for d in args.dims.split(",")):
        results = measure(variants, dims, n, n_queries, reps)
        out["results"][str(dims)] = results
        print(table(results, dims))
        if FLOOR_NAME in results and PROJECT_NAME in results:
            floor, project = results[FLOOR_NAME], results[PROJECT_NAME]
            fractions = {"write_path_fraction_of_floor": round(project["vectors_per_s"] / floor["vectors_per_s"], 3),
                         "write_path_with_lexical_fraction_of_floor":
                             round(project["vectors_per_s_with_lexical"] / floor["vectors_per_s"], 3)}
            out.setdefault("fractions", {})[str(dims)] = fractions
            # The figure (0.30 when filed) was taken at 1,536 dimensions, the default
            # model's: that one is the top-level key when measured; each size under "fractions".
            if dims == 1536 or "write_path_fraction_of_floor" not in out:
                out.update(fractions)
            print(f"write path / 2-thread floor: {fractions['write_path_fraction_of_floor']} "
                  f"({fractions['write_path_with_lexical_fraction_of_floor']} with the lexical index)\n")
    out["seconds"] = round(time.perf_counter() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out} ({out['seconds']} s)")


if __name__ == "__main__":
    main()
