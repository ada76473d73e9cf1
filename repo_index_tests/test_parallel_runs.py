"""Two partitions indexed by two runs at once, embedded Chroma: the project's dagster.yaml
puts the Chroma step in a pool of size 1, so the writes never overlap and nothing is lost."""

import subprocess
import sys
from pathlib import Path

import chromadb
import dagster as dg
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.instance.ref import InstanceRef

from repo_index_tests.gitutil import make_repo
from repo_index_tests.pipeline import assert_stages_never_interleaved, project_home

BIN = Path(sys.executable).parent


def module(i: int) -> str:
    return "\n\n".join(f"def handler_{i}_{j}(request):\n    return request.body * {j}\n" for j in range(40))


@pytest.mark.slow
def test_two_partitions_in_parallel_runs(tmp_path, openai_server):
    home, env = project_home(tmp_path, openai_server.base_url)
    openai_server.latency = 0.05
    for name in ("one", "two"):
        src = make_repo(tmp_path / name, {f"pkg/mod{i}.py": module(i) for i in range(6)})
        subprocess.run([BIN / "repo-index", "add", name, str(src)], env=env, check=True, capture_output=True)

    procs = [subprocess.Popen([BIN / "repo-index", "index", name], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for name in ("one", "two")]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)

    client = chromadb.PersistentClient(path=str(tmp_path / "data" / "chroma"))
    for name in ("one", "two"):
        coll = client.get_collection(f"repo_index-{name}")
        paths = {m["path"] for m in coll.get(include=["metadatas"])["metadatas"]}
        assert paths == {f"pkg/mod{i}.py" for i in range(6)}
    for out in outputs:
        assert "ids_match_chunks ok" in out and "vector_dimensions ok" in out

    # The Chroma steps of the two runs did not overlap.
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        spans = []
        for run in instance.get_runs():
            times = {r.event_log_entry.dagster_event.event_type: r.event_log_entry.timestamp
                     for r in instance.get_records_for_run(run.run_id).records
                     if r.event_log_entry.step_key == "vector_collection" and r.event_log_entry.dagster_event}
            spans.append((times[DagsterEventType.STEP_START], times[DagsterEventType.STEP_SUCCESS]))
    (a_start, a_end), (b_start, b_end) = sorted(spans)
    assert a_end <= b_start


@pytest.mark.slow
def test_two_runs_of_one_repository_never_interleave(tmp_path, openai_server):
    """Two `repo-index index svc` started together (the queue never sees them): the second
    waits for the first, and the collection ends exactly as one clean run leaves it."""
    from repo_index_tests.pipeline import assert_collection_exact, expected_chunks

    home, env = project_home(tmp_path, openai_server.base_url)
    openai_server.latency = 0.05
    src = make_repo(tmp_path / "svc", {f"pkg/mod{i}.py": module(i) for i in range(6)})
    subprocess.run([BIN / "repo-index", "add", "svc", str(src)], env=env, check=True, capture_output=True)

    procs = [subprocess.Popen([BIN / "repo-index", "index", "svc"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)
    assert any("waiting for run" in out for out in outputs), "\n".join(outputs)
    assert all("running in this process (no daemon is running the queue)" in out for out in outputs)

    client = chromadb.PersistentClient(path=str(tmp_path / "data" / "chroma"))
    assert_collection_exact(client.get_collection("repo_index-svc"), expected_chunks(src))
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert_stages_never_interleaved(instance, instance.get_runs())
