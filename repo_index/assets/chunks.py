"""code_chunks: syntax-aware, token-capped chunks of every discovered file."""

import time

import dagster as dg

from ..config import ChunkingConfig
from ..core.embedders import resolve_max_tokens
from ..core.repo_chunks import chunk_files
from ..partitions import repositories
from ..resources import EmbedderResource


@dg.asset(
    partitions_def=repositories,
    group_name="indexing",
    kinds={"python", "pandas"},
    description="Chunks along tree-sitter syntax boundaries, each within the token budget of the "
    "embedding model's tiktoken encoding; chunk ids are stable across unrelated edits.",
)
def code_chunks(
    context: dg.AssetExecutionContext, config: ChunkingConfig, embedder: EmbedderResource, repo_files
) -> dg.Output:
    started = time.perf_counter()
    model = embedder.build()  # cheap: the local model loads lazily
    max_tokens = resolve_max_tokens(model, config.max_tokens)
    chunks, failed = chunk_files(repo_files.attrs["root"], repo_files, max_tokens, config.workers, model.info.encoding)
    chunks.attrs = {**repo_files.attrs, "max_tokens": max_tokens}
    seconds = time.perf_counter() - started
    context.log.info(f"{len(chunks)} chunks from {len(repo_files)} files in {seconds:.1f}s (max_tokens={max_tokens})")
    return dg.Output(
        chunks,
        metadata={
            "chunks": len(chunks),
            "files_chunked": int(chunks["path"].nunique()) if len(chunks) else 0,
            "files_failed_by_reason": dict(failed),
            "max_tokens": max_tokens,
            "tokens": int(chunks["n_tokens"].sum()),
            "largest_chunk_tokens": int(chunks["n_tokens"].max()) if len(chunks) else 0,
            "chunks_by_language": {k: int(v) for k, v in chunks["language"].value_counts().items()},
            "seconds": round(seconds, 2),
        },
    )
