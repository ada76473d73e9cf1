"""How a repository's run executes its steps, chosen before it starts by what it will have
to do: a run with little to do runs every step in its own process.

Steps in separate processes pay a forkserver boot (~1.8 s) and a process per step
(~0.2 s each), worth it when chunking fans out over shards and a step's memory should end
with it; a run of a small repository, or of one whose source has not moved since its index
was built (nothing to chunk, embed or write), spends longer starting processes than
working. Both are known beforehand: the last run's file count, and the source's version
against the indexed commit (the check `status` makes).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .core.settings import get_settings
from .core.source.git import SourceError
from .core.source.registry import RepoSpec
from .status import indexed_commit, latest_metadata, source_moved, source_version

# Files of a repository its run takes in one process whatever changed: chunking that many
# is about a second of work, less than the processes would cost.
SMALL_REPOSITORY_FILES = 200
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def little_to_do(instance: dg.DagsterInstance, spec: RepoSpec, registry_file: Path) -> str | None:
    """Why `spec`'s next run has little to do ("small", "unchanged"), or None."""
    files = latest_metadata(instance, "repo_files", spec.name).get("files")
    if files is not None and files <= SMALL_REPOSITORY_FILES:
        return "small"
    indexed = indexed_commit(instance, spec.name)
    if not indexed:
        return None
    try:
        head = source_version(instance, spec, registry_file)
    except SourceError:
        return None  # the run will say what is wrong with the source
    return "unchanged" if head and not source_moved(indexed, head) else None


def execution_for(instance: dg.DagsterInstance, spec: RepoSpec, registry_file: Path,
                  run_config: dict) -> tuple[dict, str | None]:
    """`run_config` with the in-process executor when the run has little to do and the
    caller chose no executor itself, and why (None: unchanged). On a cluster (Celery) the
    steps always go to the workers: the launching machine holds no sources."""
    if "execution" in run_config or get_settings().executor == "celery":
        return run_config, None
    reason = little_to_do(instance, spec, registry_file)
    return ({**run_config, **IN_PROCESS}, reason) if reason else (run_config, None)
