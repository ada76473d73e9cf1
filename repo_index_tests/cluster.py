"""The cluster profile on loopback, for the topology test and bench/cluster.py: PostgreSQL
(the instance, the embedding cache, the request budget), Redis (the Celery broker and
result backend), `chroma run`, and `dagster-celery` workers, each in its own empty
working directory with its own data folder, sharing nothing but those services, the
configuration files and the shared folder (standing in for a network mount)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from repo_index_tests.services import chroma_server, postgres_server, redis_server
from repo_index_tests.pipeline import API_KEY

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
WORKER_MARK = "Celery worker"  # the metadata entry naming the worker in "Executing steps ..." events


def celery_yaml(redis_port: int, visibility_timeout_s: int) -> str:
    """The file the workers start with and the orchestrator reads (REPO_INDEX_CELERY_CONFIG)."""
    return f"""execution:
  config:
    broker: redis://127.0.0.1:{redis_port}/0
    backend: redis://127.0.0.1:{redis_port}/1
    config_source:
      # A task is acknowledged when its step has ended, so a worker that dies mid-step
      # leaves it in the queue: Redis gives it to another worker after visibility_timeout
      # seconds, which must exceed the longest step.
      task_acks_late: true
      task_reject_on_worker_lost: true
      worker_prefetch_multiplier: 1
      broker_transport_options:
        visibility_timeout: {visibility_timeout_s}
"""


def instance_yaml(pg_port: int) -> str:
    """The project's dagster.yaml (pools, queue) with its storage on PostgreSQL."""
    return (ROOT / "dagster.yaml").read_text() + f"""
storage:
  postgres:
    postgres_url: postgresql+psycopg2://dagster@127.0.0.1:{pg_port}/dagster
"""


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]  # what every process of the cluster is configured with
    shared: Path
    chroma_port: int
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def machine_env(self, name: str) -> dict[str, str]:
        """A machine's environment: the cluster's, with its own data folder and Dagster home."""
        machine = self.root / name
        home = machine / "home"
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.root / "config" / "dagster.yaml", home / "dagster.yaml")
        return {**self.env, "REPO_INDEX_DATA_DIR": str(machine / "data"), "DAGSTER_HOME": str(home)}

    def start_worker(self, name: str, concurrency: int = 1) -> None:
        cwd = self.root / name / "cwd"
        cwd.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        proc = subprocess.Popen(
            [BIN / "dagster-celery", "worker", "start", "-A", "dagster_celery.app", "-y", self.env["REPO_INDEX_CELERY_CONFIG"],
             "-n", name, "-l", "INFO", "--", f"--concurrency={concurrency}"],
            cwd=cwd, env=self.machine_env(name), stdout=open(log, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True)  # its own group: a kill takes the pool processes with it
        self.workers[name] = proc
        deadline = time.monotonic() + 120
        while b" ready." not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> None:
        """The machine dies: the worker and its pool processes, at once."""
        proc = self.workers.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(30)

    def stop(self) -> None:
        for name in list(self.workers):
            proc = self.workers[name]
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill_worker(name)
            self.workers.pop(name, None)


@contextmanager
def cluster(root: Path, openai_base_url: str, visibility_timeout_s: int = 45):
    """Start PostgreSQL, Redis and Chroma; yield a Cluster (workers started by the caller)."""
    root.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        pg = stack.enter_context(postgres_server())
        redis = stack.enter_context(redis_server(root))
        chroma = stack.enter_context(chroma_server(root / "chroma-server"))
        config, shared = root / "config", root / "shared"
        config.mkdir(parents=True, exist_ok=True)
        shared.mkdir(exist_ok=True)
        (config / "dagster.yaml").write_text(instance_yaml(pg))
        (config / "celery.yaml").write_text(celery_yaml(redis, visibility_timeout_s))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("REPO_INDEX_", "DAGSTER_", "OPENAI_"))},
            "REPO_INDEX_REGISTRY": str(config / "repositories.yaml"),
            "REPO_INDEX_SHARED_DIR": str(shared),
            "REPO_INDEX_CACHE_URL": f"postgresql://dagster@127.0.0.1:{pg}/dagster",
            "REPO_INDEX_EXECUTOR": "celery",
            "REPO_INDEX_CELERY_CONFIG": str(config / "celery.yaml"),
            "REPO_INDEX_CHROMA_MODE": "server",
            "REPO_INDEX_CHROMA_HOST": "127.0.0.1",
            "REPO_INDEX_CHROMA_PORT": str(chroma),
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": openai_base_url,
            # `dagster-celery worker start` runs `celery` from PATH: the venv's.
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        found = Cluster(root, env, shared, chroma)
        stack.callback(found.stop)
        yield found


def steps_by_worker(instance, run_id: str) -> list[tuple[str, str]]:
    """(step key, worker name) for each step a worker started in the run, in order: from the
    engine event dagster-celery's task reports first ("Executing steps ... in celery worker")."""
    out = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        data = event.engine_event_data if event is not None and event.is_engine_event else None
        if data is None or WORKER_MARK not in (data.metadata or {}):
            continue
        out.append((data.metadata["step_keys"].value, data.metadata[WORKER_MARK].value.split("@")[0]))
    return out
