"""chunk_embeddings: vectors for every chunk; texts already embedded are reused."""

import time

import dagster as dg

from ..config import EmbeddingConfig
from ..core import paths
from ..core.batching import EmbedStats, embed_chunks
from ..core.vector_cache import VectorCache
from ..partitions import repositories
from ..resources import EmbedderResource


def progress_logger(log):
    """Log at every 10% of the texts to embed, with throughput and retries."""
    started, next_mark = time.perf_counter(), [0.1]

    def report(stats: EmbedStats) -> None:
        done = stats.embedded / max(stats.to_embed, 1)
        if done >= next_mark[0]:
            rate = stats.embedded / max(time.perf_counter() - started, 1e-6)
            log.info(f"embedded {stats.embedded}/{stats.to_embed} ({done:.0%}), {rate:.0f} chunks/s, "
                     f"{stats.requests} requests, {stats.retries} retries")
            while next_mark[0] <= done:
                next_mark[0] += 0.1

    return report


@dg.asset(
    partitions_def=repositories,
    group_name="indexing",
    kinds={"openai", "numpy"},
    description="A float32 vector per chunk. Vectors are reused by (model, dimensions, sha256 of the "
    "embedded text): an unchanged reindex makes no embedding requests.",
)
def chunk_embeddings(
    context: dg.AssetExecutionContext, config: EmbeddingConfig, embedder: EmbedderResource, code_chunks
) -> dg.Output:
    model = embedder.build()
    with VectorCache(paths.data_dir() / "embeddings.sqlite") as cache:
        result = embed_chunks(
            code_chunks, model, cache,
            max_concurrent=config.max_concurrent, batch_size=config.batch_size,
            max_retries=config.max_retries, estimate_only=config.estimate_only,
            owner=code_chunks.attrs.get("repo", context.partition_key),
            progress=progress_logger(context.log),
        )
    s = result.stats
    context.log.info(f"{s.chunks} chunks: {s.embedded} embedded, {s.reused} reused from cache, "
                     f"{s.requests} requests, {s.retries} retries in {s.seconds:.1f}s")
    if config.estimate_only:
        context.log.info(f"estimate only: {s.tokens} tokens to embed, about ${s.estimated_usd:.4f}")
    return dg.Output(
        result,
        metadata={
            "provider": model.provider,
            "model": result.model,
            "dimensions": result.dimensions,
            "chunks": s.chunks,
            "embedded": s.embedded,
            "reused": s.reused,
            "duplicates_in_repo": s.chunks - s.unique_texts,
            "requests": s.requests,
            "retries": s.retries,
            "split_requests": s.splits,
            "errors_by_kind": s.errors,
            "tokens": s.tokens,
            "estimated_usd": round(s.estimated_usd, 6),
            "estimate_only": config.estimate_only,
            "pruned_cache_entries": s.pruned,
            "seconds": round(s.seconds, 2),
            "chunks_per_second": round(s.embedded / s.seconds, 1) if s.seconds else 0.0,
        },
    )
