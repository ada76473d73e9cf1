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

import io
from pathlib import Path

import dagster as dg
import numpy as np
from pydantic import Field

from .core.atomic_files import atomic_writer
from .core.chunk.table import ChunkTable
from .core.embed.cache import KEY_BYTES, VectorCache
from .core.embed.results import EmbedResult, EmbedStats
from .resources import ChunkStoreResource, VectorCacheResource


def save_keys(path: Path, result: EmbedResult) -> None:
    """Write the rebuild recipe of `result` atomically (a reader never sees half a file)."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        chunk_ids=np.asarray(result.chunk_ids, dtype=str),
        keys=np.frombuffer(b"".join(result.keys), dtype=np.uint8).reshape(len(result.keys), KEY_BYTES),
        model=np.asarray(result.model),
        dimensions=np.asarray(result.dimensions),
        # estimate_only results hold no vectors; keep saying so after a reload.
        has_vectors=np.asarray(result.has_vectors),
    )
    with atomic_writer(path) as fh:
        fh.write(buffer.getvalue())


def load_result(path: Path, cache: VectorCache, with_vectors: bool = False) -> EmbedResult:
    """The `EmbedResult` saved at `path`, `vectors` None once every vector it references is
    found in `cache` (by key, reading no vector); with `with_vectors` the float32 matrix.

    Raises LookupError naming what is missing when the file or any vector is gone.
    """
    if not path.is_file():
        raise LookupError(f"no stored chunk_embeddings at {path}")
    with np.load(path, allow_pickle=False) as saved:
        chunk_ids = saved["chunk_ids"].tolist()
        raw_keys = saved["keys"]
        model, dims = str(saved["model"]), int(saved["dimensions"])
        has_vectors = bool(saved["has_vectors"])
    keys = [row.tobytes() for row in raw_keys]
    stats = EmbedStats(chunks=len(chunk_ids))
    if not has_vectors:
        return EmbedResult(chunk_ids, np.zeros((0, dims), np.float32), model, dims, stats, keys)
    unique = set(keys)
    missing = len(unique) - len(cache.present(model, dims, unique))
    if missing:
        raise LookupError(f"{missing} of the vectors it references are not in the embedding cache {cache.path}")
    vectors = cache.matrix(model, dims, keys) if with_vectors else None
    return EmbedResult(chunk_ids, vectors, model, dims, stats, keys)


class EmbeddingsIOManager(dg.ConfigurableIOManager):
    """Stores chunk ids and cache keys per partition; loads them once the cache holds every vector."""

    base_dir: str = Field(description="Folder of the per-partition key files, next to the embedding cache "
                          "they point into.")
    cache: VectorCacheResource

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        return Path(self.base_dir).joinpath(*context.asset_key.path) / f"{context.asset_partition_key}.npz"

    def handle_output(self, context: dg.OutputContext, obj: EmbedResult) -> None:
        path = self._path(context)
        save_keys(path, obj)
        context.add_output_metadata({"stored": "chunk ids and cache keys (vectors stay in the cache)",
                                     "stored_bytes": path.stat().st_size})

    def load_input(self, context: dg.InputContext) -> EmbedResult:
        partition = context.asset_partition_key
        with self.cache.open() as cache:
            try:
                return load_result(self._path(context), cache)
            except LookupError as exc:
                raise dg.Failure(
                    description=f"cannot load chunk_embeddings for partition {partition!r}: {exc}. Re-materialize "
                    f"chunk_embeddings for partition {partition!r}; it embeds only what is missing."
                ) from exc


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
