"""One Celery worker against two: the same corpus indexed through the cluster profile.

The corpus is four git repositories of generated Python (750 files each, three functions
a file), launched at once by four `repo-index index` launchers against PostgreSQL, Redis,
a Chroma server and the loopback OpenAI-compatible server answering each request after
`--latency` seconds (64 inputs a request at most, as a busy provider's batch). Each
configuration starts from empty services. The `embedding` and `chroma` pools are set to 2
(a Chroma server takes concurrent writers).

Reported per configuration (rounds alternate one worker and two; the median round of
each): wall time from the launches to the last run's end, and where the time goes from
the runs' event logs (`where_time_goes`). Writes bench/results/cluster.json.

    .venv/bin/python bench/cluster.py [--files 750] [--repos 4] [--latency 0.05] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
from dagster._core.events import DagsterEventType  # noqa: E402
from dagster._core.instance.ref import InstanceRef  # noqa: E402

from repo_index_tests.cluster import BIN, cluster  # noqa: E402
from repo_index_tests.fakes.openai_server import FakeOpenAIServer  # noqa: E402
from repo_index_tests.gitutil import make_repo  # noqa: E402
from repo_index_tests.pipeline import register  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "cluster.json"


def make_corpus(root: Path, repos: int, files: int) -> dict[str, Path]:
    out = {}
    for r in range(repos):
        body = {}
        for i in range(files):
            funcs = []
            for j in range(3):
                funcs.append(
                    f"def repo{r}_step_{i}_{j}(items, limit={j + 1}):\n"
                    f"    \"\"\"Filter the items of batch {i} part {j} and total what is left.\"\"\"\n"
                    f"    kept = [item for item in items if item.size <= limit * {i + 1}]\n"
                    f"    total = 0\n    for item in kept:\n        total += item.weight * {j + 2}\n"
                    f"    return total, len(kept)\n")
            body[f"pkg{i % 10}/mod_{i:04d}.py"] = "\n\n".join(funcs)
        out[f"corpus-{r}"] = make_repo(root / f"origin-{r}", body)
    return out


def where_time_goes(home: Path) -> dict:
    """From the runs' event logs: seconds each kind of step ran (summed over runs), seconds
    steps waited in the queue (submitted -> a worker takes it) and in the worker before the
    step began (loading the code location in the pool process), steps per worker."""
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        step_s: dict[str, float] = defaultdict(float)
        waits, loads, by_worker = [], [], Counter()
        for run in instance.get_runs():
            submitted, taken, started = {}, {}, {}
            for e in instance.all_logs(run.run_id):
                ev = e.dagster_event
                if ev is None:
                    continue
                key = ev.step_key
                if ev.event_type == DagsterEventType.ENGINE_EVENT and e.user_message.startswith("Submitting celery"):
                    submitted[key] = e.timestamp
                elif ev.event_type == DagsterEventType.ENGINE_EVENT and ev.engine_event_data.metadata.get("Celery worker"):
                    by_worker[ev.engine_event_data.metadata["Celery worker"].value.split("@")[0]] += 1
                    taken[key] = e.timestamp
                    if key in submitted:
                        waits.append(e.timestamp - submitted[key])
                elif ev.event_type == DagsterEventType.STEP_START:
                    started[key] = e.timestamp
                    if key in taken:
                        loads.append(e.timestamp - taken[key])
                elif ev.event_type == DagsterEventType.STEP_SUCCESS and key in started:
                    step_s[key.split("[")[0]] += e.timestamp - started[key]
        return {"step_seconds": {k: round(v, 1) for k, v in sorted(step_s.items())},
                "step_seconds_total": round(sum(step_s.values()), 1),
                "queue_wait_s_total": round(sum(waits), 1), "worker_start_s_total": round(sum(loads), 1),
                "steps_by_worker": dict(sorted(by_worker.items()))}


def one_configuration(workers: int, origins: dict[str, Path], latency: float) -> dict:
    import subprocess

    with tempfile.TemporaryDirectory(prefix="repo-index-cluster-bench-") as tmp, \
            FakeOpenAIServer(latency=latency, max_inputs_per_request=64) as server:
        with cluster(Path(tmp), server.base_url, visibility_timeout_s=3600) as c:
            launcher = c.machine_env("launcher")
            for name, origin in origins.items():
                register(launcher, name, origin.as_uri())
            home = Path(launcher["DAGSTER_HOME"])
            with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
                for pool in ("embedding", "chroma"):
                    instance.event_log_storage.set_concurrency_slots(pool, 2)
            for w in range(workers):
                c.start_worker(f"w{w + 1}")
            started = time.perf_counter()
            procs = [subprocess.Popen([BIN / "repo-index", "index", name, "--allow-failed-checks"], env=launcher,
                                      cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                     for name in origins]
            outs = [p.communicate()[0] for p in procs]
            wall = time.perf_counter() - started
            failed = [o[-2000:] for p, o in zip(procs, outs) if p.returncode != 0]
            if failed:
                raise SystemExit("a run failed:\n" + "\n".join(failed))
            return {"workers": workers, "wall_s": round(wall, 1), "requests": server.requests_ok,
                    "texts_embedded": server.inputs_embedded, **where_time_goes(home)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=750)
    parser.add_argument("--repos", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3, help="alternating 1 and 2 workers; medians reported")
    args = parser.parse_args()
    runs: dict[int, list[dict]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="repo-index-cluster-corpus-") as tmp:
        origins = make_corpus(Path(tmp), args.repos, args.files)
        for _ in range(args.rounds):
            for workers in (1, 2):
                runs[workers].append(one_configuration(workers, origins, args.latency))
                print(json.dumps(runs[workers][-1]), flush=True)
    rows = [min(runs[w], key=lambda r: abs(r["wall_s"] - statistics.median(x["wall_s"] for x in runs[w])))
            for w in (1, 2)]  # the median round of each
    print(f"\n{args.repos} repositories x {args.files} files, fake server {args.latency * 1000:.0f} ms/request, "
          f"median of {args.rounds} rounds")
    print(f"{'workers':>7} {'wall s':>7} {'steps s':>8} {'queue s':>8} {'worker start s':>15}  steps by worker")
    for r in rows:
        print(f"{r['workers']:>7} {r['wall_s']:>7} {r['step_seconds_total']:>8} {r['queue_wait_s_total']:>8} "
              f"{r['worker_start_s_total']:>15}  {r['steps_by_worker']}")
        print(f"{'':>7} step seconds: {r['step_seconds']}")
    print(f"two workers / one: {rows[1]['wall_s'] / rows[0]['wall_s']:.2f} of the wall time")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "repos": args.repos, "files": args.files,
                                   "latency_s": args.latency, "rows": rows, "rounds": runs}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
