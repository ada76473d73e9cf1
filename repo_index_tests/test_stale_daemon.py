"""`repo-index index` right after the daemon stopped: the daemon's last heartbeat still looks
fresh, so the run is queued; when nobody takes it, the command says so instead of waiting
without a word."""

import subprocess
import threading
import time

import dagster as dg
from dagster._core.instance.ref import InstanceRef
from dagster._daemon.types import DaemonHeartbeat

from repo_index.launch import HEARTBEAT_FRESH_S, QUEUE_DAEMON
from repo_index_tests.gitutil import make_repo
from repo_index_tests.pipeline import BIN, project_home, register


def test_a_run_queued_for_a_daemon_that_stopped_is_said(tmp_path, openai_server):
    home, env = project_home(tmp_path, openai_server.base_url)
    env["PYTHONUNBUFFERED"] = "1"  # each line as it is printed
    register(env, "svc", make_repo(tmp_path / "svc", {"a.py": "def alpha():\n    return 1\n"}))
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        # What a daemon stopped a moment ago leaves: a heartbeat just young enough to count.
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - HEARTBEAT_FRESH_S + 4, QUEUE_DAEMON, "gone"))
    cli = subprocess.Popen([str(BIN / "repo-index"), "index", "svc"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(cli.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("no daemon is taking runs" in line for line in seen):
            time.sleep(0.2)
    finally:
        cli.kill()
        cli.wait()
        reader.join(timeout=10)
    out = "".join(seen)
    assert "a daemon is running" in out and "queued" in out, out
    said = next(line for line in seen if "no daemon is taking runs" in line)
    assert "--in-process" in said and "[svc]" in said
