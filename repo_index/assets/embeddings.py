"""chunk_embeddings: vectors for every chunk; texts already embedded are reused.

The op runs the core loop (core/embed/loop.py) and records what it did. Its output is
stored by `EmbeddingsIOManager` as cache keys, not vectors: the vectors live once, in the
SQLite cache the loop writes as responses arrive, and the step never holds them all. The
"embedding" pool lets the instance cap how many embedding steps run at once across
parallel partitions.
"""

import time
from collections.abc import Callable

import dagster as dg

from ..config import EmbeddingConfig
from ..core.chunk.table import ChunkTable
from ..core.embed.loop import embed_chunks
from ..core.embed.model import EmbeddingModel
from ..core.embed.results import EmbedResult, EmbedStats
from ..core.index.checks import pick_smoke_target
from ..core.search.query_vectors import embed_query
from ..core.settings import get_settings
from ..partitions import EMBEDDING_POOL, repositories
from ..resources import EmbedderResource, RunLeaseResource, VectorCacheResource

EMBEDDINGS_IO_MANAGER = "embeddings_io_manager"


def progress_logger(log, every_percent: int = 10, interval_s: float = 60.0,
                    clock: Callable[[], float] = time.monotonic) -> Callable[[EmbedStats], None]:
    """Log the plan once, then each time another `every_percent` of the texts to embed is
    done (and at least every `interval_s` while answers come) with throughput and retries."""
    started = clock()
    state = {"next": every_percent, "last": started, "planned": False}

    def report(stats: EmbedStats) -> None:
        now = clock()
        if not state["planned"]:
            state["planned"] = True
            log.info(f"{stats.chunks} chunks: {stats.reused} texts reused from the cache, {stats.to_embed} to embed "
                     f"(~${stats.estimated_usd:.4f})")
            return
        percent = stats.embedded * 100 // max(stats.to_embed, 1)
        if percent < state["next"] and now - state["last"] < interval_s:
            return
        rate = stats.embedded / max(now - started, 1e-6)
        log.info(f"embedded {stats.embedded}/{stats.to_embed} ({percent}%), {rate:.0f} chunks/s, "
                 f"{stats.requests} requests, {stats.retries} retries")
        state["last"] = now
        state["next"] = (percent // every_percent + 1) * every_percent

    return report


REFUSED_EXAMPLES = 10


def refused_metadata(result: EmbedResult, max_share: float) -> dict:
    """The chunks the server refused, with file, lines and its reason (already masked)."""
    return {
        "max_refused_share": max_share,
        "refused_examples": [{"path": r.path, "start_line": r.start_line, "end_line": r.end_line,
                              "chunk_id": r.chunk_id, "reason": r.reason} for r in result.refused[:REFUSED_EXAMPLES]],
    }


def embedding_metadata(stats: EmbedStats, model: EmbeddingModel, estimate_only: bool) -> dict:
    return {
        "provider": model.provider,
        "model": model.name,
        "dimensions": model.dimensions,
        "chunks": stats.chunks,
        "embedded": stats.embedded,
        "reused": stats.reused,
        "duplicates_in_repo": stats.chunks - stats.unique_texts,
        "requests": stats.requests,
        "retries": stats.retries,
        "rate_limited": stats.rate_limited,
        "split_requests": stats.splits,
        "errors_by_kind": stats.errors,
        "lowest_concurrency": stats.lowest_concurrency,
        "tokens": stats.tokens,
        "estimated_usd": round(stats.estimated_usd, 6),
        "estimate_only": estimate_only,
        "pruned_cache_entries": stats.pruned,
        "refused": stats.refused,
        "seconds": round(stats.seconds, 2),
        "chunks_per_second": round(stats.chunks_per_second, 1),
    }


@dg.asset(
    partitions_def=repositories,
    group_name="indexing",
    kinds={"openai", "numpy"},
    pool=EMBEDDING_POOL,
    io_manager_key=EMBEDDINGS_IO_MANAGER,
    description="A float32 vector per chunk. Vectors are reused by (model, dimensions, sha256 of the "
    "embedded text): an unchanged reindex makes no embedding requests. Stored once, in the embedding cache.",
)
def chunk_embeddings(
    context: dg.AssetExecutionContext, config: EmbeddingConfig, embedder: EmbedderResource,
    vector_cache: VectorCacheResource, run_lease: RunLeaseResource, code_chunks: ChunkTable,
) -> dg.Output:
    run_lease.hold(context, code_chunks.repo)
    model = embedder.resolve()
    max_refused_share = get_settings().max_refused_share
    with vector_cache.open() as cache:
        result = embed_chunks(
            code_chunks.chunks, embedder.build(model, config.request_timeout_s), cache,
            max_concurrent=config.max_concurrent, batch_size=config.batch_size,
            max_retries=config.max_retries, estimate_only=config.estimate_only,
            owner=code_chunks.repo,
            progress=progress_logger(context.log),
            requests_per_minute=config.requests_per_minute, tokens_per_minute=config.tokens_per_minute,
            keep_vectors=False,  # the vectors stay in the cache, where vector_collection reads them in batches
            max_refused_share=max_refused_share,
        )
        # The collection holds no refused chunk: the smoke check looks for one it holds.
        target = pick_smoke_target(code_chunks.chunks.iloc[result.embedded_rows()])
        if target is not None and not config.estimate_only:
            # The smoke check's query is embedded here, into the cache, so the step that writes
            # Chroma sends no request: no buffer of a request carrying the API key is ever
            # freed in the process whose Chroma writes files (a second request at most).
            embed_query(embedder.build(model, config.request_timeout_s), target.query, cache)
    s = result.stats
    context.log.info(f"{s.chunks} chunks: {s.embedded} embedded, {s.reused} reused from cache, "
                     f"{s.requests} requests, {s.retries} retries in {s.seconds:.1f}s")
    if config.estimate_only:
        context.log.info(f"estimate only: {s.tokens} tokens to embed, about ${s.estimated_usd:.4f}")
    metadata = embedding_metadata(s, model, config.estimate_only)
    if result.refused:
        context.log.warning(
            f"the embedding server refused {s.refused} chunks (within REPO_INDEX_MAX_REFUSED_SHARE="
            f"{max_refused_share:g}); they are left out of the collection and asked again next run, e.g. "
            + "; ".join(f"{r.where()}: {r.reason}" for r in result.refused[:3]))
        metadata.update(refused_metadata(result, max_refused_share))
    return dg.Output(result, metadata=metadata)
