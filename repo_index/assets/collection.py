"""vector_collection: the repository's Chroma collection, synced to the current chunks,
with asset checks that read the collection back."""

import contextlib
from pathlib import Path

import dagster as dg
from filelock import FileLock

from ..core.search.query import embed_query
from ..core.index.chroma import (
    check_consistency, collection_name, get_collection, pick_smoke_symbol, spans_path, symbol_rank, sync_collection,
)
from ..core.embed.cache import VectorCache, default_cache_path
from ..partitions import CHROMA_POOL, repositories
from ..resources import ChromaResource, EmbedderResource

IN_STEP = "ids_match_chunks"
DIMENSIONS = "vector_dimensions"
SMOKE = "smoke_query"
SMOKE_TOP_K = 5


def writer_lock(settings):
    """Embedded Chroma is not safe across processes: besides the pool, a file lock makes
    sure two writers never overlap however the steps were launched."""
    if settings.mode != "embedded":
        return contextlib.nullcontext()
    Path(settings.path).mkdir(parents=True, exist_ok=True)
    return FileLock(str(Path(settings.path) / ".repo_index.write.lock"))


def _checks(context, collection, chunks, embeddings, embedder) -> list[dg.AssetCheckResult]:
    seen = check_consistency(collection, embeddings.chunk_ids, embeddings.dimensions)
    results = [
        dg.AssetCheckResult(
            check_name=IN_STEP, passed=not seen.missing and not seen.orphaned,
            metadata={"missing": len(seen.missing), "orphaned": len(seen.orphaned), "records": seen.records,
                      "chunks": len(embeddings.chunk_ids), "missing_examples": seen.missing[:5],
                      "orphaned_examples": seen.orphaned[:5]},
        ),
        dg.AssetCheckResult(
            check_name=DIMENSIONS, passed=seen.wrong_dimensions == 0,
            metadata={"dimensions": embeddings.dimensions, "wrong": seen.wrong_dimensions, "sampled": seen.sampled,
                      "model": embeddings.model},
        ),
    ]
    picked = pick_smoke_symbol(chunks)
    if picked is None:
        results.append(dg.AssetCheckResult(check_name=SMOKE, passed=True,
                                           metadata={"skipped": "no named definition to look for"}))
        return results
    symbol, query = picked
    model = embedder.build()
    if model.model != embeddings.model:
        return [*results, dg.AssetCheckResult(
            check_name=SMOKE, passed=False, severity=dg.AssetCheckSeverity.WARN,
            metadata={"reason": f"configured embedder {model.model} differs from the collection's {embeddings.model}"})]
    # The query vector is cached like chunk vectors, so an unchanged reindex sends nothing.
    with VectorCache(default_cache_path()) as cache:
        vector = embed_query(model, query, cache)
    rank = symbol_rank(collection, vector, symbol, SMOKE_TOP_K)
    results.append(dg.AssetCheckResult(
        check_name=SMOKE, passed=rank is not None, severity=dg.AssetCheckSeverity.WARN,
        metadata={"query": query, "expected_symbol": symbol, "rank": rank or 0, "top_k": SMOKE_TOP_K},
    ))
    return results


@dg.asset(
    partitions_def=repositories,
    group_name="indexing",
    kinds={"chromadb"},
    pool=CHROMA_POOL,
    check_specs=[
        dg.AssetCheckSpec(IN_STEP, asset="vector_collection",
                          description="The collection's ids equal the current chunk ids (missing / orphaned)."),
        dg.AssetCheckSpec(DIMENSIONS, asset="vector_collection",
                          description="Every vector has the embedding model's dimensions (read on a sample: "
                          "Chroma holds one dimensionality per collection)."),
        dg.AssetCheckSpec(SMOKE, asset="vector_collection",
                          description=f"A query for a distinctive symbol returns its chunk in the top {SMOKE_TOP_K}."),
    ],
    description="One Chroma collection per repository holding exactly the current chunks: new ones "
    "added, vanished ones deleted, moved ones' line metadata updated without re-embedding.",
)
def vector_collection(
    context: dg.AssetExecutionContext, chroma: ChromaResource, embedder: EmbedderResource, code_chunks, chunk_embeddings
) -> dg.MaterializeResult:
    if not chunk_embeddings.has_vectors:
        raise dg.Failure("chunk_embeddings holds no vectors (estimate_only run?): materialize it without estimate_only")
    settings = chroma.settings()
    client = chroma.client()
    name = collection_name(settings.collection_prefix, context.partition_key)
    commit = code_chunks.attrs.get("commit") or f"tree:{code_chunks.attrs.get('tree', '')}"
    model, dims, keys = chunk_embeddings.model, chunk_embeddings.dimensions, chunk_embeddings.keys
    with writer_lock(settings), VectorCache(default_cache_path()) as cache:
        # The vectors stay in the cache: each write batch reads only its own rows.
        stats = sync_collection(
            client, name, code_chunks, chunk_embeddings.chunk_ids,
            lambda rows: cache.matrix(model, dims, [keys[i] for i in rows]),
            model, dims, commit, context.partition_key, spans_file=spans_path(name),
        )
    context.log.info(f"{name}: +{stats.added} -{stats.deleted} moved {stats.moved}, {stats.total} records")
    checks = _checks(context, get_collection(client, name), code_chunks, chunk_embeddings, embedder)
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
            "state_read_from": stats.spans_from,
            "rebuilt_for_new_model": stats.rebuilt,
            "embedding_model": chunk_embeddings.model,
        },
        check_results=checks,
    )
