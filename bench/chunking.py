"""Chunking benchmark on a corpus every machine has: the running Python's standard library.

    .venv/bin/python bench/chunking.py                  # 512 and 200 tokens, 3 repetitions
    .venv/bin/python bench/chunking.py --reps 5 --budgets 512

Corpus: every `*.py` under `sysconfig.get_paths()["stdlib"]` (tests included),
site-packages excluded, read and decoded with `decode_source` as the pipeline does.

Reported (medians over `--reps` repetitions; floor and one-core runs take turns on each
eighth of the corpus, so they see the same load, and besides wall time this process's CPU time is reported, which
a shared machine disturbs less; the load average is reported too):
- one_core: `chunk_source` over the whole corpus in this process (text already in memory).
- floor: tree-sitter parse + one tiktoken `encode_ordinary` of every file, one core.
- library_1 / library_2: `repo_chunks.chunk_files(..., workers=1 / 2)`, the code the
  library entry point runs (read + decode + redact + chunk, shards over a process pool);
  `speedup_2_workers` = library_1 seconds / library_2 seconds.
- chunk token statistics (mean, p95, max, count over the cap) per budget.
- invariant violations: `check_chunks` over every chunked file (outside the timings).
- dagster: the same corpus through the `code_chunks` asset (`dagster asset materialize`,
  multiprocess executor, forkserver, default workers) on a temp instance: the asset's own
  seconds (split to collect) and `vs_library_1` = those seconds / library_1 seconds.

Prints JSON and writes bench/results/chunking.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from repo_index.core.chunk.chunker import chunk_source  # noqa: E402
from repo_index.core.source.content import decode_source  # noqa: E402
from repo_index.core.chunk.languages import get_parser  # noqa: E402
from repo_index.core.chunk.repository import chunk_files  # noqa: E402
from repo_index.core.chunk.tokens import DEFAULT_ENCODING, get_encoding  # noqa: E402
from repo_index_tests.core.invariants import check_chunks  # noqa: E402


SLICES = 8


def stdlib_corpus() -> tuple[Path, list[tuple[str, str, int]]]:
    """(stdlib root, [(relative path, text, size in bytes)]), sorted by path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "site-packages")
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            full = Path(dirpath) / name
            if full.is_symlink() or not full.is_file():
                continue
            data = full.read_bytes()
            try:
                text = decode_source(data)
            except UnicodeDecodeError:
                continue
            files.append((full.relative_to(root).as_posix(), text, len(data)))
    files.sort()
    return root, files


def timed(fn, reps: int) -> tuple[float, list[float], object]:
    times, result = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def rates(seconds: float, n_files: int, n_bytes: int, cpu: float | None = None) -> dict:
    out = {"seconds": round(seconds, 3), "files_per_s": round(n_files / seconds, 1),
           "mb_per_s": round(n_bytes / 1e6 / seconds, 2)}
    if cpu is not None:  # this process's CPU time: less sensitive to a shared machine
        out.update(cpu_seconds=round(cpu, 3), cpu_files_per_s=round(n_files / cpu, 1),
                   cpu_mb_per_s=round(n_bytes / 1e6 / cpu, 2))
    return out


def interleaved(fns: dict, reps: int, slices: int = 1) -> dict:
    """Run each of `fns` once per repetition, in turn, so all see the same load; returns
    name -> (median wall s, median CPU s, wall runs, last result).

    With `slices` > 1 each function takes `(part, slices)` and returns a list: the runs
    alternate every 1/`slices` of the work (a second or so here), so a change of load on a
    shared machine hits all of them alike; each repetition's time is the sum over parts and
    its result the concatenation."""
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    last = {}
    for _ in range(reps):
        spent = {k: [0.0, 0.0] for k in fns}
        results: dict = {k: [] for k in fns}
        for part in range(slices):
            for name, fn in fns.items():
                c0, t0 = time.process_time(), time.perf_counter()
                out = fn(part, slices) if slices > 1 else fn()
                spent[name][0] += time.perf_counter() - t0
                spent[name][1] += time.process_time() - c0
                if slices > 1:
                    results[name].extend(out)
                else:
                    results[name] = out
        for name in fns:
            wall[name].append(spent[name][0])
            cpu[name].append(spent[name][1])
            last[name] = results[name]
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k]), wall[k], last[k])
            for k in fns}


def token_stats(counts: list[int], cap: int) -> dict:
    ordered = sorted(counts)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0
    return {"chunks": len(counts), "mean": round(statistics.fmean(counts), 1) if counts else 0,
            "p95": p95, "max": max(counts, default=0),
            "over_cap": sum(c > cap for c in counts)}


def through_dagster(root: Path, budget: int) -> dict:
    """The corpus through repo_files + code_chunks on a temp instance, as `dagster` runs it."""
    import dagster as dg

    from repo_index.core.source.registry import RepoSpec, save_registry
    from repo_index.jobs import MULTIPROCESS_DEFAULTS
    from repo_index.partitions import REPOSITORIES

    with tempfile.TemporaryDirectory(prefix="repo-index-bench-") as tmp:
        work = Path(tmp)
        (work / "home").mkdir()
        shutil.copy(ROOT / "dagster.yaml", work / "home" / "dagster.yaml")
        env = {**os.environ, "DAGSTER_HOME": str(work / "home"), "REPO_INDEX_DATA_DIR": str(work / "data"),
               "REPO_INDEX_REGISTRY": str(work / "repositories.yaml"),
               # The openai provider fixes the 512 budget; nothing is embedded.
               "OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
        save_registry(work / "repositories.yaml",
                      [RepoSpec("stdlib", str(root), include=("**/*.py",), exclude=("site-packages/**",))])
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            instance.add_dynamic_partitions(REPOSITORIES, ["stdlib"])
        executor = MULTIPROCESS_DEFAULTS
        config = {"execution": {"config": {"multiprocess": executor}},
                  "ops": {"code_chunks": {"ops": {"split_files": {"config": {"max_tokens": budget}}}}}}
        started = time.perf_counter()
        subprocess.run([Path(sys.executable).parent / "dagster", "asset", "materialize", "-m", "repo_index.definitions",
                        "--select", "repo_files,code_chunks", "--partition", "stdlib",
                        "--config-json", json.dumps(config)], env=env, check=True, capture_output=True)
        wall = time.perf_counter() - started
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            event = instance.get_latest_materialization_event(dg.AssetKey("code_chunks"))
            meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    return {"seconds": meta["seconds"], "command_wall_s": round(wall, 1), "files": meta["files"],
            "chunks": meta["chunks"], "shards": meta["shards"], "tokens_max": meta["tokens_max"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--budgets", default="512,200")
    ap.add_argument("--no-invariants", action="store_true")
    ap.add_argument("--no-workers", action="store_true")
    ap.add_argument("--no-dagster", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "chunking.json"))
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]

    enc = get_encoding(DEFAULT_ENCODING)
    root, corpus = stdlib_corpus()
    n_files, n_bytes = len(corpus), sum(size for _, _, size in corpus)
    load_before = os.getloadavg()
    report: dict = {
        "corpus": {"root": str(root), "files": n_files, "mb": round(n_bytes / 1e6, 2),
                   "python": sys.version.split()[0]},
        "reps": args.reps, "cpu_count": os.cpu_count(),
    }
    parser = get_parser("python")
    chunk_source(corpus[0][1], corpus[0][0], "python", 512, enc)  # warm the caches

    def floor(part: int, parts: int) -> list[int]:
        counts = []
        for _, text, _ in corpus[part::parts]:
            parser.parse(text.encode("utf-8"))
            counts.append(len(enc.encode_ordinary(text)))
        return counts

    def one_core(budget: int, part: int, parts: int) -> list:
        return [chunk_source(text, path, "python", budget, enc) for path, text, _ in corpus[part::parts]]

    # The corpus in 8 interleaved parts (every 8th file), the floor and each budget taking
    # turns on each part: see `interleaved`.
    fns = {"floor": floor}
    fns.update({f"one_core_{b}": (lambda part, parts, b=b: one_core(b, part, parts)) for b in budgets})
    runs = interleaved(fns, args.reps, slices=SLICES)
    sec, cpu, times, n_tokens = runs["floor"]
    report["floor"] = {**rates(sec, n_files, n_bytes, cpu), "tokens": sum(n_tokens),
                       "runs_s": [round(t, 3) for t in times]}
    c0 = time.process_time()
    for _, text, _ in corpus:
        parser.parse(text.encode("utf-8"))
    report["floor"]["parse_cpu_mb_per_s"] = round(n_bytes / 1e6 / (time.process_time() - c0), 2)
    c0 = time.process_time()
    for _, text, _ in corpus:
        enc.encode_ordinary(text)
    report["floor"]["encode_cpu_mb_per_s"] = round(
        n_bytes / 1e6 / (time.process_time() - c0), 2)

    ordered = [f for part in range(SLICES) for f in corpus[part::SLICES]]  # the order results come in
    for budget in budgets:
        sec, cpu, times, per_file = runs[f"one_core_{budget}"]
        counts = [c.n_tokens for chunks in per_file for c in chunks]
        entry = {**rates(sec, n_files, n_bytes, cpu), "runs_s": [round(t, 3) for t in times],
                 "fraction_of_floor": round(report["floor"]["seconds"] / sec, 2),
                 "cpu_fraction_of_floor": round(report["floor"]["cpu_seconds"] / cpu, 2),
                 "fraction_of_floor_per_run": [round(f / t, 3) for f, t in zip(runs["floor"][2], times)],
                 "tokens": token_stats(counts, budget)}
        if not args.no_invariants:
            violations, examples = 0, []
            for (path, text, _), chunks in zip(ordered, per_file):
                try:
                    check_chunks(text, chunks, budget, enc)
                except AssertionError as exc:
                    violations += 1
                    if len(examples) < 5:
                        examples.append(f"{path}: {exc!r}"[:300])
            entry["invariant_violations"] = violations
            entry["invariant_examples"] = examples
        report[f"one_core_{budget}"] = entry
        print(json.dumps({f"one_core_{budget}": entry}), file=sys.stderr)

    if not args.no_workers:
        budget = budgets[0]
        files = pd.DataFrame([(p, "python", s) for p, _, s in corpus],
                             columns=["path", "language", "size_bytes"])
        def library(workers: int):
            c0 = os.times()
            table, total = chunk_files(root, files, budget, workers=workers)
            c1 = os.times()
            # CPU of this process plus of the reaped pool workers.
            cpu = sum(c1[:4]) - sum(c0[:4])
            return table, total, cpu

        runs = interleaved({w: (lambda w=w: library(w)) for w in (1, 2)}, args.reps)
        lib = {}
        for workers, (sec, _, times, (table, total, cpu)) in runs.items():
            lib[workers] = sec
            report[f"library_{workers}_{budget}"] = {
                **rates(sec, n_files, n_bytes), "runs_s": [round(t, 3) for t in times],
                "cpu_seconds_all_processes_last_run": round(cpu, 2),
                "chunks": len(table), "failed": dict(total.failed)}
        report["speedup_2_workers"] = round(lib[1] / lib[2], 2)
        if not args.no_dagster:
            report["dagster"] = through_dagster(root, budget)
            report["dagster"]["vs_library_1"] = round(report["dagster"]["seconds"] / lib[1], 2)

    report["loadavg_before"] = [round(x, 2) for x in load_before]
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(report, indent=2)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
