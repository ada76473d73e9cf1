"""What `repo-index status` reports per repository, from the collection and the instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .core.source.registry import RepoSpec
from .core.source.git import SourceError, current_head
from .core.index.chroma import chroma_settings_from_env, collection_name, get_collection, open_client


def latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1).records
    if not records:
        return {}
    meta = records[0].asset_materialization.metadata
    return {k: getattr(v, "value", v) for k, v in meta.items()}


def repository_status(instance: dg.DagsterInstance, specs: list[RepoSpec], registry_file: Path) -> list[dict]:
    settings = chroma_settings_from_env()
    client = open_client(settings)
    rows = []
    for spec in specs:
        coll = get_collection(client, collection_name(settings.collection_prefix, spec.name))
        meta = (coll.metadata or {}) if coll is not None else {}
        indexed = meta.get("commit")
        records = coll.count() if coll is not None else 0
        try:
            head = current_head(spec, registry_file)
        except SourceError as exc:
            head, error = None, str(exc)
        else:
            error = ""
        chunks = latest_metadata(instance, "code_chunks", spec.name).get("chunks")
        if coll is None:
            state = "not indexed"
        elif error:
            state = f"source unreachable: {error}"
        elif chunks is not None and records != chunks:
            state = f"out of step: {records} records, {chunks} chunks"
        elif head and indexed and not indexed.startswith(head) and not head.startswith(indexed):
            state = "stale: source has moved"
        else:
            state = "in step" if head else "in step (no commit to compare)"
        rows.append({"name": spec.name, "source": spec.source, "indexed_commit": indexed, "head": head,
                     "records": records, "chunks": chunks, "model": meta.get("embedding_model"), "state": state})
    return rows
