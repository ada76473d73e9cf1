"""vector_collection: the repository's Chroma collection, synced to the current chunks."""

import dagster as dg

from ..core.store import collection_name, sync_collection
from ..partitions import repositories
from ..resources import ChromaResource


@dg.asset(
    partitions_def=repositories,
    group_name="indexing",
    kinds={"chromadb"},
    description="One Chroma collection per repository holding exactly the current chunks: new ones "
    "added, vanished ones deleted, moved ones' line metadata updated without re-embedding.",
)
def vector_collection(
    context: dg.AssetExecutionContext, chroma: ChromaResource, code_chunks, chunk_embeddings
) -> dg.MaterializeResult:
    if chunk_embeddings.vectors.shape[0] != len(code_chunks):
        raise dg.Failure("chunk_embeddings holds no vectors (estimate_only run?): materialize it without estimate_only")
    settings = chroma.settings()
    name = collection_name(settings.collection_prefix, context.partition_key)
    commit = code_chunks.attrs.get("commit") or f"tree:{code_chunks.attrs.get('tree', '')}"
    stats = sync_collection(
        chroma.client(), name, code_chunks, chunk_embeddings.chunk_ids, chunk_embeddings.vectors,
        chunk_embeddings.model, chunk_embeddings.dimensions, commit, context.partition_key,
    )
    context.log.info(f"{name}: +{stats.added} -{stats.deleted} moved {stats.moved}, {stats.total} records")
    return dg.MaterializeResult(
        metadata={
            "collection": name,
            "chroma_mode": settings.mode,
            "commit": commit,
            "records": stats.total,
            "added": stats.added,
            "deleted": stats.deleted,
            "moved": stats.moved,
            "unchanged": stats.unchanged,
            "rebuilt_for_new_model": stats.rebuilt,
            "embedding_model": chunk_embeddings.model,
        }
    )
