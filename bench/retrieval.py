"""Retrieval benchmark: how often search finds the function a query asks for.

    .venv/bin/python bench/retrieval.py                          # the default packages
    .venv/bin/python bench/retrieval.py --packages json --max-queries 30
    .venv/bin/python bench/retrieval.py --latency                # plus a 100,000-chunk repository

Corpus (bench/retrieval_corpus.py): pure-Python packages of this Python's standard library,
copied with every docstring removed, tests left out. Queries are chosen by rule: each
function's docstring's first sentence (CodeSearchNet-style description queries) and each
function's bare name when it is unique in the corpus (identifier queries); a query is
answered when a hit's file is the function's and its lines hold the `def` line. At most
`--max-queries` of each kind, a seeded sample.

The corpus is indexed by the project's own pipeline (`repo-index add`, `repo-index index`,
the job the UI runs) in a fresh DAGSTER_HOME, offline, with the local model (no OpenAI key);
the full index and an unchanged reindex are timed, and the lexical index's sync alone
(bench/retrieval_index_cost.py) for its share of each. Every query is then searched in this
process with the library's `search()` (k=10) in each mode: vector, lexical and hybrid, or
vector only while `search()` has no `mode`. Reported per mode and query kind: R@1, R@5,
R@10 and MRR@10 with 95% bootstrap intervals (seeded, paired across modes), hybrid minus
vector with its paired interval, and median/p95 query time. `--latency` adds a synthetic
repository of 100,000 chunks (bench/retrieval_latency.py).

Prints a table and writes bench/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pandas as pd  # noqa: E402
from retrieval_corpus import DEFAULT_PACKAGES, Query, build_corpus, make_queries  # noqa: E402
from retrieval_index_cost import collection_chunks, lexical_sync_seconds  # noqa: E402
from retrieval_metrics import (bootstrap_indexes, first_correct_rank, first_inside_rank, latency_ms,  # noqa: E402
                               paired_difference, per_query_scores, summarize)

from repo_index.core.search import search  # noqa: E402
from repo_index.core.settings import Settings  # noqa: E402

MODES = ("vector", "lexical", "hybrid")
KINDS = ("description", "identifier")
REPO = "stdlib-nodocs"
K = 10


def available_modes() -> tuple[str, ...]:
    """Every mode when `search()` takes one; before hybrid search lands, vector only."""
    return MODES if "mode" in inspect.signature(search).parameters else ("vector",)


def bench_environment(work: Path) -> dict[str, str]:
    """A fresh project in `work`, offline with the local model. Variables of the caller
    that would point elsewhere (another data folder, Chroma server, OpenAI key) are dropped."""
    home = work / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REPO_INDEX_", "OPENAI_", "CHROMA_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), REPO_INDEX_DATA_DIR=str(work / "data"),
               REPO_INDEX_REGISTRY=str(work / "repositories.yaml"), REPO_INDEX_EMBEDDER="local",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def run_cli(env: dict, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "repo-index"), *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"repo-index {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return wall, done.stdout


def chunks_by_path(chunks: pd.DataFrame) -> dict[str, list[tuple[int, int, str]]]:
    """path -> (start line, end line, text) of each of its chunks."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    for path, start, end, text in zip(chunks["path"], chunks["start_line"], chunks["end_line"], chunks["text"]):
        out.setdefault(path, []).append((int(start), int(end), text))
    return out


def answerable(queries: list[Query], chunks: dict[str, list[tuple[int, int, str]]]) -> tuple[list[Query], Counter]:
    """The queries whose answer is in the collection, and why the others are not: discovery
    may skip a file; a chunk holding the def line but not the `def` would mean the bench's
    line numbers and the chunker's disagree."""
    kept, dropped = [], Counter({"answer not in the collection": 0,
                                 "answer chunk lacks the def (line numbers disagree)": 0})
    for q in queries:
        texts = [text for a, b, text in chunks.get(q.path, ()) if a <= q.def_line <= b]
        name = re.escape(q.qualname.rsplit(".", 1)[-1])
        if not texts:
            dropped["answer not in the collection"] += 1
        elif not any(re.search(rf"\bdef\s+{name}\b", t) for t in texts):
            dropped["answer chunk lacks the def (line numbers disagree)"] += 1
        else:
            kept.append(q)
    return kept, dropped


def sample(queries: list[Query], cap: int, seed: int) -> list[Query]:
    by_kind = []
    for kind in KINDS:
        pool = [q for q in queries if q.kind == kind]
        by_kind += random.Random(f"{seed}-{kind}").sample(pool, min(cap, len(pool)))
    return by_kind


def run_queries(queries: list[Query], modes: tuple[str, ...], settings: Settings) -> dict:
    """mode -> (ranks, seconds per query, lenient ranks). One untimed search first: loading
    the model and opening Chroma are not what a warm query costs."""
    with_mode = "mode" in inspect.signature(search).parameters
    out = {}
    for mode in modes:
        extra = {"mode": mode} if with_mode else {}
        search(queries[0].text, repos=[REPO], k=K, settings=settings, **extra)
        ranks, seconds, lenient = [], [], []
        for q in queries:
            started = time.perf_counter()
            hits = search(q.text, repos=[REPO], k=K, settings=settings, **extra)
            seconds.append(time.perf_counter() - started)
            ranks.append(first_correct_rank(hits, q.path, q.def_line))
            lenient.append(first_inside_rank(hits, q.path, q.def_line, q.end_line))
        out[mode] = (ranks, seconds, lenient)
    return out


def score(queries: list[Query], results: dict, resamples: int, seed: int) -> dict:
    report = {}
    for kind in KINDS:
        idx = [i for i, q in enumerate(queries) if q.kind == kind]
        if not idx:
            continue
        draws = bootstrap_indexes(len(idx), resamples, seed)
        per_mode = {mode: per_query_scores([ranks[i] for i in idx]) for mode, (ranks, _, _) in results.items()}
        report[kind] = {"queries": len(idx),
                        "modes": {mode: summarize(s, draws) for mode, s in per_mode.items()},
                        # A diagnostic, not the benchmark's rule: a hit anywhere in the function counts.
                        "lenient_any_part_of_function": {
                            mode: summarize(per_query_scores([lenient[i] for i in idx]), draws)
                            for mode, (_, _, lenient) in results.items()}}
        if "hybrid" in per_mode and "vector" in per_mode:
            report[kind]["hybrid_minus_vector"] = paired_difference(per_mode["hybrid"], per_mode["vector"], draws)
    return report


def print_table(report: dict, latency: dict, modes: tuple[str, ...]) -> None:
    metrics = ["R@1", "R@5", "R@10", "MRR@10"]
    print(f"\n{'kind':12} {'mode':8} {'n':>5}  " + "  ".join(f"{m:>19}" for m in metrics))
    for kind, r in report.items():
        for mode, s in r["modes"].items():
            cells = "  ".join(f"{s[m]['mean']:.3f} [{s[m]['lo']:.3f},{s[m]['hi']:.3f}]" for m in metrics)
            print(f"{kind:12} {mode:8} {r['queries']:>5}  {cells}")
        if "hybrid_minus_vector" in r:
            d = r["hybrid_minus_vector"]
            print(f"{kind:12} {'h - v':8} {'':>5}  " + "  ".join(
                f"{d[m]['mean']:+.3f} [{d[m]['lo']:+.3f},{d[m]['hi']:+.3f}]" for m in metrics))
        print(f"{kind:12} lenient (a hit anywhere in the function) R@1: " + ", ".join(
            f"{mode} {s['R@1']['mean']:.3f}" for mode, s in r["lenient_any_part_of_function"].items()))
    for mode in MODES:
        if mode not in modes:
            print(f"{mode}: mode not available (search() takes no `mode` yet)")
    print("query ms (warm):", ", ".join(f"{m} median {v['median']} p95 {v['p95']}" for m, v in latency.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", default=",".join(DEFAULT_PACKAGES),
                    help="comma-separated standard-library packages (default: %(default)s)")
    ap.add_argument("--max-queries", type=int, default=500, help="at most this many queries of each kind")
    ap.add_argument("--seed", type=int, default=17, help="for the query sample and the bootstrap")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--latency", action="store_true",
                    help="also time queries on a synthetic repository of --latency-chunks chunks")
    ap.add_argument("--latency-chunks", type=int, default=100_000)
    ap.add_argument("--latency-queries", type=int, default=50)
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "retrieval.json")
    args = ap.parse_args()
    packages = tuple(p.strip() for p in args.packages.split(",") if p.strip())
    if not packages:
        ap.error("--packages names no package")
    modes = available_modes()

    load_at_start = os.getloadavg()  # query times on a shared machine are only as good as its load
    work = Path(tempfile.mkdtemp(prefix="repo-index-retrieval-"))
    try:
        corpus = build_corpus(work / "corpus", packages)
        queries, left_out = make_queries(corpus)
        env = bench_environment(work)
        run_cli(env, "add", REPO, str(work / "corpus"))
        full_s, out = run_cli(env, "index", REPO)
        unchanged_s, _ = run_cli(env, "index", REPO)
        # This process searches the project it just indexed, as `repo-index search` would.
        os.environ.clear()
        os.environ.update(env)
        settings = Settings.from_env()
        chunks = collection_chunks(settings, REPO)
        n_chunks = len(chunks)
        lexical_s = lexical_sync_seconds(chunks, work)
        queries, unanswerable = answerable(queries, chunks_by_path(chunks))
        del chunks
        left_out.update(unanswerable)
        found = Counter(q.kind for q in queries)
        queries = sample(queries, args.max_queries, args.seed)
        if not queries:
            raise SystemExit(f"the rules give no query on {', '.join(packages)}: left out {dict(left_out)}")
        print(f"corpus: {corpus.files} files, {n_chunks} chunks; queries: "
              + ", ".join(f"{k} {Counter(q.kind for q in queries)[k]} of {found[k]}" for k in KINDS), flush=True)
        results = run_queries(queries, modes, settings)
        latency = {mode: latency_ms(seconds) for mode, (_, seconds, _) in results.items()}
        report = score(queries, results, args.resamples, args.seed)
        summary = re.search(r"chunks\s+([\d,]+)", out)
        results_doc = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "note": "shared",
                        "load_average_at_start": load_at_start, "load_average_after_queries": os.getloadavg()},
            "embedder": "local (all-MiniLM-L6-v2)",
            "modes": list(modes), "modes_not_available": [m for m in MODES if m not in modes],
            "corpus": {"packages": list(packages), "files": corpus.files, "bytes": corpus.bytes,
                       "docstrings_removed": corpus.docstrings_removed, "functions": len(corpus.functions),
                       "chunks": n_chunks,
                       "chunks_reported_by_index": int(summary.group(1).replace(",", "")) if summary else None,
                       "skipped": dict(corpus.skipped)},
            "queries": {"found": dict(found), "used": dict(Counter(q.kind for q in queries)),
                        "max_per_kind": args.max_queries, "left_out": dict(left_out), "seed": args.seed},
            "index_seconds": {"full": round(full_s, 1), "unchanged": round(unchanged_s, 1),
                              "lexical_sync_alone": lexical_s,
                              "lexical_share_of_full": round(lexical_s["full"] / full_s, 4),
                              "lexical_share_of_unchanged": round(lexical_s["unchanged"] / unchanged_s, 4)},
            "k": K, "bootstrap_resamples": args.resamples,
            "results": report, "query_ms": latency,
            # For inspection, not for tuning: every query with its answer and rank per mode.
            "per_query": [{"kind": q.kind, "query": q.text, "path": q.path, "def_line": q.def_line,
                           "function": q.qualname, "rank": {mode: ranks[i] for mode, (ranks, _, _) in results.items()},
                           "lenient_rank": {mode: lenient[i] for mode, (_, _, lenient) in results.items()}}
                          for i, q in enumerate(queries)],
        }
        print_table(report, latency, modes)
        print(f"index: full {full_s:.1f} s, unchanged reindex {unchanged_s:.1f} s; the lexical sync alone: "
              f"{lexical_s['full']} s new ({lexical_s['full'] / full_s:.1%} of the full index), "
              f"{lexical_s['unchanged']} s unchanged ({lexical_s['unchanged'] / unchanged_s:.1%} of the reindex)")
        if args.latency:
            from retrieval_latency import synthetic_latency

            lat = synthetic_latency(settings, REPO, args.latency_chunks, args.latency_queries,
                                    [q.text for q in queries], args.seed)
            results_doc["latency_synthetic"] = lat
            print(f"\nsynthetic repository: {lat['chunks']:,} chunks (built in {lat['build_s']} s), "
                  f"{lat['queries']} queries, warm ms (median, p95):")
            for label, key in (("search()", "search_ms"),):
                for mode, v in lat[key].items():
                    print(f"  {label} {mode:8} {v['median']:>8} {v['p95']:>8}")
            for key in ("query_embedding_ms_model_held", "query_encode_ms_same_thread", "collection_query_ms",
                        "lexical_query_ms"):
                if key in lat:
                    print(f"  {key:38} {lat[key]['median']:>8} {lat[key]['p95']:>8}")
            if "note" in lat:
                print(" ", lat["note"])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results_doc, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
