"""IO managers.

`EmbeddingsIOManager` stores `chunk_embeddings` without storing its vectors a second time.
The vectors already live in the content-addressed SQLite cache (core/embed/cache.py),
where every response is written as it arrives; Dagster's default IO manager would pickle
the whole float32 matrix again for every partition. So the output stored here is only
what finds the vectors: the chunk ids, each row's cache key (sha256 of the embedded
text), the model and the dimensions: ~100 bytes per chunk instead of ~6 KB. Loading checks,
by key alone, that every vector is still in the cache and returns the `EmbedResult` as the
asset returned it, `vectors` None: the consumer reads the vectors it needs from the cache
in batches, so no step holds a repository's whole matrix (`load_result(...,
with_vectors=True)` builds it, for tests and tools).

This works because the cache never prunes a vector that the latest materialization of a
repository references (see core/embed/cache/refs.py). If a vector is missing anyway (the cache file
was deleted, or the asset was materialized before this IO manager), loading fails and says
to re-materialize chunk_embeddings, which then costs requests only for what is missing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg
from pydantic import Field

from .core.chunk.table import ChunkTable
from .core.embed.results import EmbedResult
from .core.embed.stored import keys_path, load_result, save_keys, stored_form
from .core.file_memo import FileMemo
from .resources import ChunkStoreResource, VectorCacheResource


# chunk_embeddings as this process stored it, with the run's id: the next step of the same
# run in this process (the in-process executor) takes it without reading the keys back or
# looking each vector up again (0.5 s at 116 k chunks). They were in the cache when the step
# stored them, and stay: the cache never prunes what a repository's latest keys reference
# (core/embed/cache/refs.py). Any other run, or a rewritten file, reads and checks afresh.
_STORED = FileMemo()


class EmbeddingsIOManager(dg.ConfigurableIOManager):
    """Stores chunk ids and cache keys per partition; loads them once the cache holds every vector."""

    base_dir: str = Field(description="Folder of the per-partition key files, next to the embedding cache "
                          "they point into.")
    cache: VectorCacheResource

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        return keys_path(Path(self.base_dir), context.asset_partition_key)

    def handle_output(self, context: dg.OutputContext, obj: EmbedResult) -> None:
        path = self._path(context)
        save_keys(path, obj)
        _STORED.keep(path, [context.run_id, stored_form(obj)])
        context.add_output_metadata({"stored": "chunk ids and cache keys (vectors stay in the cache)",
                                     "stored_bytes": path.stat().st_size})

    def load_input(self, context: dg.InputContext) -> EmbedResult:
        partition = context.asset_partition_key
        kept = _STORED.get(self._path(context))
        if kept and kept[0] == _run_of(context):
            return dataclasses.replace(kept[1])
        with self.cache.open() as cache:
            try:
                return load_result(self._path(context), cache)
            except LookupError as exc:
                raise dg.Failure(
                    description=f"cannot load chunk_embeddings for partition {partition!r}: {exc}. Re-materialize "
                    f"chunk_embeddings for partition {partition!r}; it embeds only what is missing."
                ) from exc


def _run_of(context: dg.InputContext) -> str | None:
    """The run loading an input (None for a context built outside a run)."""
    try:
        return context.step_context.run_id
    except dg.DagsterInvariantViolationError:
        return None


class ChunkTableIOManager(dg.ConfigurableIOManager):
    """Stores each partition's chunk table where the next reindex looks for chunks to reuse
    (core/chunk/table.py: `<chunk store>/<repository>.pkl`)."""

    store: ChunkStoreResource

    def handle_output(self, context: dg.OutputContext, obj: ChunkTable) -> None:
        path = self.store.store().save(obj)
        context.add_output_metadata({"stored_bytes": path.stat().st_size})

    def load_input(self, context: dg.InputContext) -> ChunkTable:
        try:
            return self.store.store().load(context.asset_partition_key)
        except LookupError as exc:
            raise dg.Failure(description=f"{exc}: materialize code_chunks first") from exc
