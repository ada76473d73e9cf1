"""What the instance says of a repository, for `repo-index status`, the sensors and the run
lease: its indexed commit, whether a run has ended, and each repository's state."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg

from .core.index.client import ChromaSettings, get_collection, open_client, read_lock, unreadable, unreadable_note
from .core.source.git import SourceError
from .core.settings import get_settings
from .core.source.discovery import DEFAULT_MAX_FILE_BYTES
from .core.source.registry import RepoSpec
from .core.source.snapshot import current_version
from .core.source.stat_cache import stats_path


def latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1).records
    if not records:
        return {}
    meta = records[0].asset_materialization.metadata
    return {k: getattr(v, "value", v) for k, v in meta.items()}


def run_has_ended(instance: dg.DagsterInstance):
    """For the run lease: whether a run id is finished (or unknown) in `instance`."""
    def has_ended(run_id: str) -> bool:
        run = instance.get_run_by_id(run_id)
        return run is None or run.is_finished
    return has_ended


def source_version(instance: dg.DagsterInstance, spec: RepoSpec, registry_file: Path) -> str | None:
    """The source's state now (`current_version`), comparable with `indexed_commit`: a local
    folder is fingerprinted with the file-size bound its last repo_files used, and files
    unchanged since the last check are not read again."""
    bound = latest_metadata(instance, "repo_files", spec.name).get("max_file_bytes") or DEFAULT_MAX_FILE_BYTES
    return current_version(spec, registry_file, bound, stats_path(get_settings().source_stats_dir(), spec.name))


def source_moved(indexed: str | None, head: str | None) -> bool:
    """Whether the source's version now (`head`) is not the one indexed; either may be a
    prefix of the other (a pinned commit the remote does not advertise is compared by its
    prefix). Unknown on either side: not moved."""
    return bool(head and indexed and not indexed.startswith(head) and not head.startswith(indexed))


def indexed_commit(instance: dg.DagsterInstance, repo: str) -> str | None:
    """The commit (or `tree:` fingerprint) of `repo` that its collection holds: recorded by
    vector_collection once the sync succeeded, so a run that failed earlier leaves the
    previous one. The one answer for the sensor and for status."""
    return latest_metadata(instance, "vector_collection", repo).get("commit") or None


def failed_after_index(instance: dg.DagsterInstance, repo: str) -> str | None:
    """The newest failed run of `repo` that ended after its collection was last synced, as
    a short note; None when there is none."""
    failed = instance.get_run_records(
        filters=dg.RunsFilter(tags={"dagster/partition": repo}, statuses=[dg.DagsterRunStatus.FAILURE]), limit=1)
    if not failed or failed[0].end_time is None:
        return None
    synced = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("vector_collection"), asset_partitions=[repo]), limit=1).records
    if synced and synced[0].timestamp >= failed[0].end_time:
        return None
    ended = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(failed[0].end_time))
    return f"run {failed[0].dagster_run.run_id[:8]} failed at {ended}, after the index was built"


def repository_status(instance: dg.DagsterInstance, specs: list[RepoSpec], registry_file: Path,
                      chroma: ChromaSettings) -> list[dict]:
    # What the collections hold is read under the embedded Chroma's shared lock; the heads
    # (network, file hashing) after it is released.
    with read_lock(chroma):
        client = open_client(chroma)
        held = {}
        for spec in specs:
            coll = get_collection(client, chroma.collection_name(spec.name))
            if coll is None:
                held[spec.name] = None
                continue
            damage = unreadable(coll)  # one line, not a traceback
            held[spec.name] = (coll.metadata or {}), (0 if damage else coll.count()), damage
    rows = []
    for spec in specs:
        meta, records, damage = held[spec.name] or ({}, 0, None)
        indexed = indexed_commit(instance, spec.name) if held[spec.name] is not None else None
        try:
            head = source_version(instance, spec, registry_file)
        except SourceError as exc:
            head, error = None, str(exc)
        else:
            error = ""
        chunks = latest_metadata(instance, "code_chunks", spec.name).get("chunks")
        if held[spec.name] is None:
            state = "not indexed"
        elif damage:
            state = unreadable_note(spec.name, damage, chroma)
        elif error:
            state = f"source unreachable: {error}"
        elif chunks is not None and records != chunks:
            state = f"out of step: {records} records, {chunks} chunks"
        elif source_moved(indexed, head):
            state = "stale: source has moved"
        elif failure := failed_after_index(instance, spec.name):
            state = f"stale: {failure}"
        else:
            state = "in step" if head else "in step (no commit to compare)"
        rows.append({"name": spec.name, "source": spec.source, "indexed_commit": indexed, "head": head,
                     "records": records, "chunks": chunks, "model": meta.get("embedding_model"), "state": state})
    return rows
