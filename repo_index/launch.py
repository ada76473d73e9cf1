"""How `repo-index index` starts a run: the way the UI does when a daemon runs the queue,
in its own process when none does.

Either way the run is created with the code location's origin, as the UI creates it: it
is filed under `index_repository` in the UI (job page, timeline) and can be re-executed
from there. Queued, it waits for the run queue's limits (one run per repository) and runs
in the daemon's code server, with the daemon's environment; here, it runs in this
process with this process's environment.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG
from dagster._core.workspace.load import location_origin_from_module_name

from .jobs import INDEX_JOB

CODE_LOCATION = "repo_index"  # workspace.yaml's location_name
DEFINITIONS_MODULE = "repo_index.definitions"  # workspace.yaml's module_name
# The label the UI files a job's runs under (job page, timeline).
REPOSITORY_LABEL = f"{SINGLETON_REPOSITORY_NAME}@{CODE_LOCATION}"
HOST_TAG, PID_TAG = "repo_index/host", "repo_index/pid"
QUEUE_DAEMON = "QUEUED_RUN_COORDINATOR"
# The daemon writes a heartbeat every 30 s; one older than this means nobody dequeues.
HEARTBEAT_FRESH_S = 90


@dataclass(frozen=True)
class Launch:
    run_id: str
    queued: bool  # True: the daemon runs it; False: this process ran it


def remote_origin() -> RemoteJobOrigin:
    """The origin the UI gives runs of `index_repository` (matched by location name)."""
    location = location_origin_from_module_name(DEFINITIONS_MODULE, None, None, location_name=CODE_LOCATION)
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), INDEX_JOB)


def queue_daemon_alive(instance: dg.DagsterInstance) -> bool:
    """A daemon dequeues this instance's runs now (its heartbeat is fresh)."""
    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        return False
    beat = instance.get_daemon_heartbeats().get(QUEUE_DAEMON)
    return beat is not None and time.time() - beat.timestamp <= HEARTBEAT_FRESH_S


def process_tags() -> dict[str, str]:
    """Which process runs a run executed here: no daemon monitors it, so `reap_dead_runs`
    must be able to tell when that process is gone."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def launch_index_run(instance: dg.DagsterInstance, run_config: dict, tags: dict[str, str],
                     assets: list[str] | None, in_process: bool) -> Launch:
    """Create one run of `index_repository` and queue it for the daemon, or (`in_process`)
    execute it here, returning when it has ended."""
    from .definitions import get_index_job

    job = dg.reconstructable(get_index_job)
    tags = {**tags, REPOSITORY_LABEL_TAG: REPOSITORY_LABEL, **(process_tags() if in_process else {})}
    run = instance.create_run_for_job(
        job_def=job.get_definition(), run_config=run_config, tags=tags,
        asset_selection=frozenset(dg.AssetKey(a) for a in assets) if assets else None,
        job_code_origin=job.get_python_origin(), remote_job_origin=remote_origin())
    if in_process:
        execute_run(job, run, instance)
        return Launch(run.run_id, queued=False)
    # The queued coordinator only records the run as queued; the daemon's own workspace
    # launches it, so no workspace is needed here.
    instance.submit_run(run.run_id, workspace=None)  # type: ignore[arg-type]
    return Launch(run.run_id, queued=True)
