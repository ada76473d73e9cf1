"""The cluster profile, whole, on loopback: the instance, the embedding cache and the
request budget on PostgreSQL, steps on two `dagster-celery` workers through a Redis broker,
collections on a Chroma server, and the state every machine reads in a shared folder. Each
worker runs in its own empty working directory with its own data folder (its clones), so
a step can only succeed through what the profile shares.

One test, in phases, because starting the services and workers costs most of its time:
two repositories indexed at once by two launchers (the pools bound steps across both runs
and both workers); then a third whose embedding step's worker is SIGKILLed mid-step (the
run completes on the other worker, embedding again only what was in flight); then
`status` and `search` against the profile."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import chromadb
import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from repo_index_tests.cluster import BIN, cluster, steps_by_worker
from repo_index_tests.gitutil import make_repo
from repo_index_tests.pipeline import assert_collection_exact, expected_chunks, register

pytestmark = pytest.mark.slow

# Enough files for chunking to fan out over two shards (a shard takes at least 100).
FILES_PER_REPO = 240


def _source(root: Path, tag: str, n: int = FILES_PER_REPO) -> Path:
    files = {f"pkg/{tag}_{i:03d}.py": f"def {tag}_handler_{i}(request):\n    \"\"\"Answer {tag} request {i}.\"\"\"\n"
             f"    return request.reply({i})\n" for i in range(n)}
    return make_repo(root / f"origin-{tag}", files)


def _index(env: dict, cwd: Path, *names: str, extra: tuple = ()) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    # The fake server's vectors of these look-alike files defeat the smoke query's top 5.
    return subprocess.Popen([BIN / "repo-index", "index", *names, "--allow-failed-checks", *extra], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def _runs(instance, name: str):
    return instance.get_runs(dg.RunsFilter(tags={"dagster/partition": name}))


def _step_spans(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """step key -> (started, ended) from the run's event log."""
    from dagster._core.events import DagsterEventType

    start, end = {}, {}
    for entry in instance.all_logs(run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}):
        key = entry.dagster_event.step_key
        (start if entry.dagster_event.event_type == DagsterEventType.STEP_START else end)[key] = entry.timestamp
    return {k: (start[k], end[k]) for k in start if k in end}


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_two_workers_index_as_one_machine_would_and_survive_a_killed_worker(tmp_path, openai_server):
    openai_server.latency = 0.05
    origins = {name: _source(tmp_path, name) for name in ("alpha", "beta", "gamma")}
    with cluster(tmp_path / "cluster", openai_server.base_url) as c:
        launcher = c.machine_env("launcher")
        for name, origin in origins.items():
            register(launcher, name, origin.as_uri())
        # Phase 1: two launchers at once (two machines' CLIs), one repository each, launched
        # before any worker runs: they say so, and their steps wait in the queue.
        first = [_index(launcher, tmp_path / "cluster" / f"cli-{n}", n) for n in ("alpha", "beta")]
        said = [p.stdout.readline() for p in first]
        assert all("no Celery worker answers" in line for line in said), said
        c.start_worker("w1")
        c.start_worker("w2")
        outputs = [_finish(p) for p in first]
        assert openai_server.embedded_counts and max(openai_server.embedded_counts.values()) == 1, \
            "a text was embedded twice"
        home = Path(launcher["DAGSTER_HOME"])
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            assert "Postgres" in type(instance.run_storage).__name__
            runs = {n: _runs(instance, n) for n in ("alpha", "beta")}
            assert all(len(r) == 1 and r[0].is_success for r in runs.values()), outputs
            placed = {n: steps_by_worker(instance, r[0].run_id) for n, r in runs.items()}
            spans = {n: _step_spans(instance, r[0].run_id) for n, r in runs.items()}
            messages = [e.user_message for e in instance.all_logs(runs["alpha"][0].run_id)][:60]
        log = "\n".join(f"{n}: {step} on {worker}" for n, steps in placed.items() for step, worker in steps)
        (tmp_path / "steps-by-worker.log").write_text(log)
        print("\nwhich worker ran which step:\n" + log)
        workers_used = {worker for steps in placed.values() for _, worker in steps}
        assert workers_used == {"w1", "w2"}, log or messages
        # Every step of both runs ran on a worker (none in a launcher's process).
        assert {step for steps in placed.values() for step, _ in steps} >= {
            "repo_files", "code_chunks.split_files", "code_chunks.collect_chunks", "chunk_embeddings",
            "vector_collection"}, log
        assert sum(step.startswith("code_chunks.chunk_files_shard") for step, _ in placed["alpha"]) >= 2, log
        # The pools hold across runs and workers: one embedding step and one sync at a time.
        for step in ("chunk_embeddings", "vector_collection"):
            assert not _overlap(spans["alpha"][step], spans["beta"][step]), (step, spans)

        client = chromadb.HttpClient(host="127.0.0.1", port=c.chroma_port)
        for name in ("alpha", "beta"):
            assert_collection_exact(client.get_collection(f"repo_index-{name}"), expected_chunks(origins[name]),
                                    data_dir=c.shared)
        # No machine's own data folder holds an embedding cache: the vectors are in PostgreSQL.
        assert not list((tmp_path / "cluster").glob("*/data/embeddings.sqlite"))

        # Phase 2: a worker dies in the middle of an embedding step.
        openai_server.reset_counters()
        openai_server.latency = 0.4  # ~30 requests of 8 inputs, 2 in flight: several seconds of embedding
        openai_server.max_inputs_per_request = 8
        proc = _index(launcher, tmp_path / "cluster" / "cli-gamma", "gamma", extra=("--max-concurrent", "2"))
        victim = _wait_for_embedding_worker(home, openai_server)
        c.kill_worker(victim)
        out = _finish(proc)
        assert "steps run on 2 Celery worker(s): w1@" in out, out
        counts = openai_server.embedded_counts
        twice = [t for t, n in counts.items() if n > 1]
        # Only what was in flight when the worker died is embedded again (at most 2 requests of 8).
        assert max(counts.values()) <= 2 and len(twice) <= 16, (len(twice), out)
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            (run,) = _runs(instance, "gamma")
            assert run.is_success, out
            gamma = steps_by_worker(instance, run.run_id)
            embedders = [w for step, w in gamma if step == "chunk_embeddings"]
        print(f"gamma, {victim} SIGKILLed during chunk_embeddings; {len(twice)} of {len(counts)} texts sent twice:\n"
              + "\n".join(f"gamma: {step} on {worker}" for step, worker in gamma))
        assert embedders[0] == victim and embedders[-1] != victim, embedders
        assert_collection_exact(client.get_collection("repo_index-gamma"), expected_chunks(origins["gamma"]),
                                data_dir=c.shared)

        # Phase 3: what users run against the profile, from a machine that indexed nothing.
        reader = c.machine_env("reader")
        status = subprocess.run([BIN / "repo-index", "status", "--json"], env=reader, capture_output=True, text=True,
                                timeout=300)
        assert status.returncode == 0, status.stderr
        assert {r["name"] for r in json.loads(status.stdout) if r.get("indexed_commit")} == {"alpha", "beta", "gamma"}
        found = subprocess.run([BIN / "repo-index", "search", "beta_handler_17", "--repo", "beta", "-k", "3"],
                               env=reader, capture_output=True, text=True, timeout=300)
        assert found.returncode == 0, found.stderr
        assert "pkg/beta_017.py" in found.stdout, found.stdout


def _wait_for_embedding_worker(home: Path, server, timeout: float = 300) -> str:
    """The worker running gamma's embedding step, once requests are arriving from it."""
    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        while time.monotonic() < deadline:
            runs = _runs(instance, "gamma")
            if runs and server.requests_ok >= 3:
                for step, worker in steps_by_worker(instance, runs[0].run_id):
                    if step == "chunk_embeddings":
                        return worker
            time.sleep(0.2)
    raise AssertionError("gamma's embedding step never started")
