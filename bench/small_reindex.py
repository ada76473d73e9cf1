"""Small-reindex benchmark: what an unchanged repository's run costs end to end.

    .venv/bin/python bench/small_reindex.py            # 5 rounds, CLI and daemon
    .venv/bin/python bench/small_reindex.py --no-daemon

The repository is the demo's (this interpreter's `logging` package: 3 files), indexed once
with the default (local) model in a fresh data folder, registry and Dagster home (a copy of
the project's dagster.yaml). Then, alternating each round:

- CLI: `repo-index index NAME --in-process` with no daemon running, timed from the
  command's start to its exit (what a user or a cron job pays);
- daemon: `repo-index index NAME` while `dagster-daemon run` runs the queue (as the UI and
  the nightly schedule launch), timed from the command's start to its exit, which follows
  the run's end; with the run's time in the queue, in its worker's start and in its steps.

Prints medians and writes bench/results/small_reindex.json. The issue's target: the CLI's
unchanged reindex of a 3-file repository within 3 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results" / "small_reindex.json"
NAME = "demo"


def environment(folder: Path) -> dict[str, str]:
    home = folder / "home"
    home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    shutil.copy(ROOT / "workspace.yaml", home / "workspace.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPO_INDEX_", "OPENAI_"))}
    return {**env, "DAGSTER_HOME": str(home), "REPO_INDEX_DATA_DIR": str(folder / "data"),
            "REPO_INDEX_REGISTRY": str(folder / "repositories.yaml"), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def timed_index(env: dict[str, str], *flags: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([BIN / "repo-index", "index", NAME, *flags], env=env, cwd=env["DAGSTER_HOME"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"repo-index index failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def daemon_phases() -> dict[str, float]:
    """The last run's time in the queue, in its worker's start and in its steps (from its
    events), in seconds."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        at = {r.dagster_event.event_type_value: r.timestamp for r in instance.all_logs(run.run_id) if r.dagster_event}
    return {"queued_s": round(at["PIPELINE_STARTING"] - at["PIPELINE_ENQUEUED"], 2),
            "worker_start_s": round(at["PIPELINE_START"] - at["PIPELINE_STARTING"], 2),
            "run_s": round(at["PIPELINE_SUCCESS"] - at["PIPELINE_START"], 2)}


def start_daemon(env: dict[str, str]) -> subprocess.Popen:
    daemon = subprocess.Popen([BIN / "dagster-daemon", "run", "-w", str(ROOT / "workspace.yaml")], env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    from dagster import DagsterInstance

    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    with DagsterInstance.get() as instance:  # ready once its queue heartbeat is written
        for _ in range(240):
            if "QUEUED_RUN_COORDINATOR" in instance.get_daemon_heartbeats():
                return daemon
            time.sleep(0.5)
    raise SystemExit("dagster-daemon did not start within 2 minutes")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-daemon", action="store_true", help="time the CLI's in-process runs only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    source = Path(logging.__file__).parent
    out: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "repository": {"source": str(source), "files": len(list(source.glob("*.py")))},
                 "rounds": args.rounds, "cli_s": [], "daemon_s": []}
    with tempfile.TemporaryDirectory(prefix="small-reindex-") as tmp:
        env = environment(Path(tmp))
        subprocess.run([BIN / "repo-index", "add", NAME, str(source)], env=env, check=True, capture_output=True)
        out["first_index_s"], _ = timed_index(env)
        timed_index(env)  # the first unchanged run also writes stat caches and the like
        for round_ in range(args.rounds):
            # --in-process: a daemon stopped a moment ago leaves a heartbeat the CLI takes
            # for a running daemon for 90 s (launch.py), and would queue the run for it.
            seconds, printed = timed_index(env, "--in-process")
            out["cli_s"].append(round(seconds, 3))
            print(f"round {round_ + 1}: CLI {seconds:.2f} s", flush=True)
            if args.no_daemon:
                continue
            daemon = start_daemon(env)
            try:
                seconds, printed = timed_index(env)
            finally:
                stop(daemon)
            if "queued" not in printed.lower():
                raise SystemExit(f"the run was not queued for the daemon:\n{printed}")
            out["daemon_s"].append(round(seconds, 3))
            phases = daemon_phases()
            out.setdefault("daemon_phases", []).append(phases)
            print(f"round {round_ + 1}: daemon {seconds:.2f} s ({phases})", flush=True)
    out["cli_median_s"] = round(statistics.median(out["cli_s"]), 2)
    if out["daemon_s"]:
        out["daemon_median_s"] = round(statistics.median(out["daemon_s"]), 2)
    print(f"unchanged reindex of {out['repository']['files']} files: CLI median {out['cli_median_s']} s"
          + (f", through the daemon {out['daemon_median_s']} s" if out["daemon_s"] else "")
          + f" (first index {out['first_index_s']:.1f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
