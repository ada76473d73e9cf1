"""A `repo-index index` killed while its run holds the "chroma" pool's only slot: the
next CLI run marks the dead run failed, frees the slot and completes (it used to wait
for that slot forever: no daemon monitors a run the CLI executes itself)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.instance.ref import InstanceRef

from repo_index_tests.gitutil import make_repo
from repo_index_tests.pipeline import project_home

BIN = Path(sys.executable).parent


def _in_vector_collection(home: Path) -> bool:
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        for run in instance.get_runs():
            for record in instance.get_records_for_run(run.run_id).records:
                event = record.event_log_entry.dagster_event
                if event and event.event_type == DagsterEventType.STEP_START and event.step_key == "vector_collection":
                    return True
    return False


@pytest.mark.slow
def test_a_killed_cli_run_frees_the_chroma_slot(tmp_path, openai_server):
    home, env = project_home(tmp_path, openai_server.base_url)  # the project's dagster.yaml: 1 "chroma" slot
    for name in ("alpha", "beta"):
        src = make_repo(tmp_path / name, {f"{name}/service.py": f"def serve_{name}_requests(port):\n    return port\n"})
        subprocess.run([BIN / "repo-index", "add", name, str(src)], env=env, check=True, capture_output=True)

    # Slow answers: the smoke query at the end of vector_collection keeps alpha in the
    # chroma slot for seconds, long enough to kill it there.
    openai_server.latency = 4.0
    victim = subprocess.Popen([BIN / "repo-index", "index", "alpha"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while not _in_vector_collection(home):
        assert victim.poll() is None and time.monotonic() < deadline, "alpha never reached vector_collection"
        time.sleep(0.2)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(30)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert instance.event_log_storage.get_concurrency_info("chroma").claimed_slots  # the dead run holds it

    openai_server.latency = 0.0
    done = subprocess.run([BIN / "repo-index", "index", "beta"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "was killed: marked failed, its pool slots freed" in done.stdout
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        statuses = {run.tags["dagster/partition"]: run.status for run in instance.get_runs()}
    assert statuses == {"alpha": dg.DagsterRunStatus.FAILURE, "beta": dg.DagsterRunStatus.SUCCESS}
