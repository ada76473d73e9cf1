"""Search server benchmark (issue 18): latency and load of a warm `repo-index serve`, and
what `repo-index search` costs with and without it.

    .venv/bin/python bench/serving.py                     # about 5 minutes here, 3 of them indexing
    .venv/bin/python bench/serving.py --work /tmp/sv      # keep the indexed project; the next run reuses it
    .venv/bin/python bench/serving.py --baseline /work/main   # also time the in-process search of another tree

Ten repositories, one per pure-Python package of this interpreter's standard library
(docstrings removed, tests left out: bench/retrieval_corpus.py), registered and indexed by
the project's own CLI (`repo-index add`, `repo-index index --all`) in a fresh project
folder, offline, with the local model. Queries are chosen by rule from that corpus: a
function's docstring's first sentence (description) and a function's unique name
(identifier). Then `repo-index serve --port 0` is started in its own process group and,
once it says it listens (its models loaded):
  (a) sequential: `--queries` queries, half over all ten repositories and half over the
      query's own, k=10, over one keep-alive HTTP connection: p50/p95/p99 ms per kind;
  (b) `--clients` concurrent clients (asyncio, httpx) for `--seconds` s, each sending the
      next query as soon as it has an answer: requests, errors (any non-200 or exception,
      with their messages), answers missing a repository (the server's deadline),
      throughput, p50/p95/p99; queries not asked before where there are enough (a
      repeated query's vector is kept by the server);
  (c) the server's VmRSS and VmHWM (/proc) after warm-up and after the load;
  (d) `repo-index search` through the server (REPO_INDEX_SERVER_URL): median wall time of
      `--cli-runs` processes, process start included;
then the server is stopped with SIGTERM (it must exit 0 within 10 s) and
  (e) `repo-index search` without a server: median of `--inprocess-runs` processes, and
      where its time goes: `-X importtime` for torch, sentence-transformers, chromadb and
      dagster, and bench/serving_phases.py for the model load, the query vector, the
      search and the freshness check. `--baseline DIR` runs the same with the code of DIR
      (e.g. a worktree of main) on PYTHONPATH, alternating run by run, and checks both
      give the same query vector.

Prints a table and writes bench/results/serving.json with the date, the machine (cores,
CPU model, load averages) and every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from retrieval import bench_environment, run_cli  # noqa: E402
from retrieval_corpus import build_corpus, make_queries  # noqa: E402

PACKAGES = ("logging", "json", "email", "http", "asyncio", "xml", "unittest", "concurrent", "importlib", "urllib")
K = 10
READY = re.compile(r"repo-index serving on (http://\S+)")
IMPORTS = ("torch", "sentence_transformers", "chromadb", "dagster")


def repo_name(package: str) -> str:
    return f"stdlib-{package}"


# -- the project: ten indexed repositories ------------------------------------------------

def project_environment(work: Path) -> dict:
    """bench/retrieval.py's environment for a project in `work`, made there once."""
    if not (work / "home").is_dir():
        return bench_environment(work)
    scratch = Path(tempfile.mkdtemp(prefix="repo-index-serving-env-"))
    env = bench_environment(scratch)
    shutil.rmtree(scratch)
    return {**env, "DAGSTER_HOME": str(work / "home"), "REPO_INDEX_DATA_DIR": str(work / "data"),
            "REPO_INDEX_REGISTRY": str(work / "repositories.yaml")}


def build_project(work: Path, env: dict, packages: tuple[str, ...]) -> dict:
    """Corpus, registry and index in `work`; the queries are saved with them, so a later
    run with the same `--work` reuses all three."""
    saved = work / "queries.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    queries, files, chunks_note = [], 0, {}
    for package in packages:
        corpus = build_corpus(work / "corpus", (package,))
        files += corpus.files
        found, _ = make_queries(corpus)
        queries += [{"kind": q.kind, "text": q.text, "repo": repo_name(package)} for q in found]
        run_cli(env, "add", repo_name(package), str(work / "corpus" / package))
    index_s, out = run_cli(env, "index", "--all")
    (work / "index.log").write_text(out)
    for name, count in re.findall(r"\[(stdlib-[\w.-]+)\].*?collection\s+([\d,]+)", out, re.S):
        chunks_note[name] = int(count.replace(",", ""))
    project = {"files": files, "index_s": round(index_s, 1), "chunks": chunks_note, "queries": queries}
    saved.write_text(json.dumps(project))
    return project


def pick_queries(pool: list[dict], n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """`n` queries, half of each kind, every other one over all repositories (repos None);
    and the rest of the pool, shuffled, for the load."""
    rng = random.Random(seed)
    chosen = []
    for kind in ("description", "identifier"):
        of_kind = [q for q in pool if q["kind"] == kind]
        chosen += rng.sample(of_kind, min(n // 2, len(of_kind)))
    rng.shuffle(chosen)
    asked = [{**q, "repos": None if i % 2 == 0 else [q["repo"]]} for i, q in enumerate(chosen)]
    used = {q["text"] for q in chosen}
    rest = [q for q in pool if q["text"] not in used]
    rng.shuffle(rest)
    return asked, [{**q, "repos": None if i % 2 == 0 else [q["repo"]]} for i, q in enumerate(rest)]


def percentiles(seconds: list[float]) -> dict:
    if not seconds:
        return {"n": 0}
    ms = np.array(seconds) * 1000
    return {"n": len(ms), "p50": round(float(np.percentile(ms, 50)), 1), "p95": round(float(np.percentile(ms, 95)), 1),
            "p99": round(float(np.percentile(ms, 99)), 1), "max": round(float(ms.max()), 1)}


def body(q: dict) -> dict:
    return {"query": q["text"], "repositories": q["repos"], "k": K, "mode": "hybrid"}


# -- the server ---------------------------------------------------------------------------

class Server:
    """`repo-index serve --port 0` in its own process group; its stderr is kept."""

    def __init__(self, env: dict, timeout_s: float = 300):
        started = time.perf_counter()
        self.proc = subprocess.Popen([str(BIN / "repo-index"), "serve", "--port", "0"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        ready = threading.Event()
        self.url = None

        def read() -> None:
            for line in self.proc.stderr:
                self.lines.append(line.rstrip())
                found = READY.search(line)
                if found:
                    self.url = found.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(timeout_s)
        if self.url is None:
            self.kill()
            raise SystemExit("repo-index serve did not say it listens:\n" + "\n".join(self.lines))
        self.start_s = round(time.perf_counter() - started, 2)

    def memory_mb(self) -> dict:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return {key: round(int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1)) / 1024, 1)
                for key in ("VmRSS", "VmHWM")}

    def stop(self) -> dict:
        """SIGTERM, then up to 10 s for it to exit: its exit code and how long it took."""
        started = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            return {"exit_code": None, "seconds": None, "note": "still running 10 s after SIGTERM: killed"}
        return {"exit_code": code, "seconds": round(time.perf_counter() - started, 2)}

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def sequential(url: str, queries: list[dict]) -> dict:
    """Each query in turn over one keep-alive connection; ms by kind and scope."""
    times: dict[str, list[float]] = {}
    errors: Counter = Counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        for q in queries:
            started = time.perf_counter()
            response = client.post("/search", json=body(q))
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                errors[f"HTTP {response.status_code}: {response.text[:200]}"] += 1
                continue
            scope = "all" if q["repos"] is None else "one"
            for key in (q["kind"], f"{q['kind']} / {scope} repositories", f"all queries / {scope} repositories",
                        "all queries"):
                times.setdefault(key, []).append(elapsed)
    return {"ms": {key: percentiles(v) for key, v in times.items()}, "errors": dict(errors)}


async def load(url: str, queries: list[dict], clients: int, seconds: float) -> dict:
    """`clients` clients sending queries back to back for `seconds`."""
    times: list[float] = []
    errors: Counter = Counter()
    partial: Counter = Counter()
    feed = iter(range(10**9))
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            q = queries[next(feed) % len(queries)]
            started = time.perf_counter()
            try:
                response = await client.post("/search", json=body(q))
            except Exception as exc:  # every failure counts, with what it said
                errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
                continue
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                errors[f"HTTP {response.status_code}: {response.text[:200]}"] += 1
                continue
            times.append(elapsed)
            for note in response.json().get("unavailable", {}).values():
                partial[note] += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    wall = time.perf_counter() - started
    asked = len(times) + sum(errors.values())
    return {"clients": clients, "seconds": round(wall, 1), "requests": asked, "ok": len(times),
            "errors": sum(errors.values()), "error_messages": dict(errors),
            "repositories_left_out_of_an_answer": dict(partial),
            "distinct_queries": min(asked, len(queries)), "repeated_queries": max(0, asked - len(queries)),
            "throughput_per_s": round(len(times) / wall, 1), "ms": percentiles(times)}


# -- the CLI ------------------------------------------------------------------------------

def cli_search(env: dict, q: dict) -> float:
    args = ["search", q["text"], "-k", str(K)] + (["--repo", q["repo"]] if q["repos"] else [])
    seconds, _ = run_cli(env, *args)
    return seconds


def import_times(env: dict, q: dict) -> dict:
    """ms of each of IMPORTS (with what it imports first), from one in-process search run
    with -X importtime."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "repo_index.cli", "search", q["text"],
                           "--repo", q["repo"], "-k", str(K)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"search with -X importtime failed:\n{done.stderr[-2000:]}")
    found = {}
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() in IMPORTS and parts[2].strip() not in found:
            found[parts[2].strip()] = round(int(parts[1]) / 1000, 1)
    return found


def phases(env: dict, q: dict, vector_out: Path) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "serving_phases.py"), q["text"], q["repo"],
                           "--vector-out", str(vector_out)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench/serving_phases.py failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def in_process(env: dict, queries: list[dict], runs: int, trees: dict[str, Path], work: Path) -> dict:
    """Median wall time of `runs` in-process searches per tree of code (alternating), their
    phases and imports, and whether every tree gives the same query vector."""
    walls: dict[str, list[float]] = {name: [] for name in trees}
    for i in range(runs):
        for name, tree in trees.items():
            walls[name].append(cli_search({**env, "PYTHONPATH": str(tree)}, queries[i]))
    report = {}
    vectors = {}
    for name, tree in trees.items():
        tree_env = {**env, "PYTHONPATH": str(tree)}
        out = work / f"vector-{name}.npy"
        report[name] = {"tree": str(tree), "wall_s": [round(s, 2) for s in walls[name]],
                        "median_s": round(statistics.median(walls[name]), 2),
                        "imports_ms": import_times(tree_env, queries[0]),
                        "phases_ms": phases(tree_env, queries[0], out)}
        vectors[name] = np.load(out)
        out.unlink()
    first = next(iter(vectors.values()))
    report["same_query_vector"] = all(np.array_equal(first, v) for v in vectors.values())
    return report


def interpreter_start_s(env: dict) -> float:
    walls = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
        walls.append(time.perf_counter() - started)
    return round(statistics.median(walls), 3)


# -- the report ---------------------------------------------------------------------------

def machine() -> dict:
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    mem = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    return {"cpus": os.cpu_count(), "cpu_model": cpu.group(1) if cpu else platform.processor(),
            "memory_gb": round(int(mem.group(1)) / 2**20, 1) if mem else None,
            "python": platform.python_version(), "note": "shared with other work"}


def print_report(doc: dict) -> None:
    print(f"\nserver: started and listening with its model loaded in {doc['server']['start_s']} s")
    print(f"\n(a) sequential, one connection, k={K}       {'n':>5} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    for key, v in sorted(doc["sequential"]["ms"].items()):
        print(f"    {key:40} {v['n']:>5} {v['p50']:>8} {v['p95']:>8} {v['p99']:>8} {v['max']:>8}")
    if doc["sequential"]["errors"]:
        print("    errors:", doc["sequential"]["errors"])
    lo = doc["load"]
    print(f"\n(b) {lo['clients']} clients for {lo['seconds']} s: {lo['requests']} requests, {lo['errors']} errors, "
          f"{lo['throughput_per_s']}/s; ms p50 {lo['ms'].get('p50')} p95 {lo['ms'].get('p95')} "
          f"p99 {lo['ms'].get('p99')} max {lo['ms'].get('max')}; {lo['repeated_queries']} repeated queries")
    for message, n in lo["error_messages"].items():
        print(f"    {n} x {message}")
    for note, n in lo["repositories_left_out_of_an_answer"].items():
        print(f"    a repository left out of {n} answers: {note}")
    mem = doc["server"]["memory_mb"]
    print(f"\n(c) server memory MB: after warm-up RSS {mem['after_warm_up']['VmRSS']} (peak "
          f"{mem['after_warm_up']['VmHWM']}), after the load RSS {mem['after_load']['VmRSS']} "
          f"(peak {mem['after_load']['VmHWM']})")
    via = doc["cli_through_server"]
    print(f"\n(d) repo-index search through the server: median {via['median_s']} s of {len(via['wall_s'])} "
          f"(interpreter start alone {doc['interpreter_start_s']} s)")
    stop = doc["server"]["stop"]
    print(f"    SIGTERM: exit code {stop['exit_code']} after {stop['seconds']} s")
    print("\n(e) repo-index search without a server:")
    for name, r in doc["in_process"].items():
        if not isinstance(r, dict):
            continue
        print(f"    {name} ({r['tree']}): median {r['median_s']} s of {r['wall_s']}")
        print("      imports ms (cumulative, first import): "
              + ", ".join(f"{k} {v}" for k, v in r["imports_ms"].items()))
        print("      phases ms: " + ", ".join(f"{k} {v}" for k, v in r["phases_ms"].items()))
    if len([k for k, v in doc["in_process"].items() if isinstance(v, dict)]) > 1:
        print(f"    same query vector: {doc['in_process']['same_query_vector']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=200, help="sequential queries (half of each kind)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0, help="how long the concurrent clients run")
    ap.add_argument("--cli-runs", type=int, default=10, help="`repo-index search` runs through the server")
    ap.add_argument("--inprocess-runs", type=int, default=3, help="`repo-index search` runs without a server")
    ap.add_argument("--baseline", type=Path, help="another tree of this project (e.g. a worktree of main): its "
                                                  "in-process search is timed too, alternating with this one")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--work", type=Path, help="project folder to keep (and reuse when already indexed); "
                                              "default: a temp folder, removed")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serving.json")
    args = ap.parse_args()

    load_avg = {"start": os.getloadavg()}
    work = args.work or Path(tempfile.mkdtemp(prefix="repo-index-serving-"))
    work.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        env = project_environment(work)
        env["PYTHONPATH"] = str(ROOT)  # this tree's code, whatever is installed
        project = build_project(work, env, PACKAGES)
        print(f"{len(PACKAGES)} repositories, {project['files']} files, {sum(project['chunks'].values())} chunks, "
              f"indexed in {project['index_s']} s; {len(project['queries'])} queries found", flush=True)
        asked, rest = pick_queries(project["queries"], args.queries, args.seed)
        load_avg["before_server"] = os.getloadavg()

        server = Server(env)
        with httpx.Client(base_url=server.url, timeout=120) as client:  # warm-up: every repository opened
            for q in rest[:10]:
                client.post("/search", json=body(q)).raise_for_status()
        rest = rest[10:]
        seq = sequential(server.url, asked)
        mem_warm = server.memory_mb()
        print(f"sequential done: p50 {seq['ms']['all queries']['p50']} ms", flush=True)
        load_avg["before_load"] = os.getloadavg()
        loaded = asyncio.run(load(server.url, rest, args.clients, args.seconds))
        load_avg["after_load"] = os.getloadavg()
        mem_load = server.memory_mb()
        via_env = {**env, "REPO_INDEX_SERVER_URL": server.url}
        via = [cli_search(via_env, q) for q in asked[:args.cli_runs]]
        stop = server.stop()
        server_doc = {"start_s": server.start_s, "stop": stop,
                      "memory_mb": {"after_warm_up": mem_warm, "after_load": mem_load},
                      "stderr_tail": server.lines[-5:]}
        server = None

        trees = {"this tree": ROOT}
        if args.baseline:
            trees = {"baseline": args.baseline.resolve(), **trees}
        single = [{**q, "repos": [q["repo"]]} for q in asked]
        doc = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "machine": machine(),
            "embedder": "local (all-MiniLM-L6-v2)",
            "corpus": {"packages": list(PACKAGES), "repositories": len(PACKAGES), "files": project["files"],
                       "chunks": project["chunks"], "index_s": project["index_s"]},
            "k": K, "mode": "hybrid", "seed": args.seed,
            "server": server_doc,
            "sequential": seq,
            "load": loaded,
            "cli_through_server": {"wall_s": [round(s, 3) for s in via], "median_s": round(statistics.median(via), 3)},
            "interpreter_start_s": interpreter_start_s(env),
            "in_process": in_process(env, single, args.inprocess_runs, trees, work),
        }
        load_avg["end"] = os.getloadavg()
        doc["machine"]["load_average"] = load_avg
        print_report(doc)
    finally:
        if server is not None:
            server.kill()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
