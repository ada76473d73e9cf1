"""code_chunks: a graph-backed asset that fans chunking out over step processes.

split_files plans a few large shards (about 2 × workers, at least MIN_FILES_PER_SHARD
files each) and emits them as dynamic outputs; chunk_files_shard runs once per shard,
in parallel under the multiprocess executor (or Celery/Kubernetes, unchanged);
collect_chunks concatenates them into the chunk table and records the metadata.
"""

import os
import time

import dagster as dg
import numpy as np

from ..config import ChunkingConfig
from ..core.embedders import resolve_max_tokens
from ..core.repo_chunks import chunk_shard, collect, file_items, plan_shards
from ..partitions import repositories
from ..resources import EmbedderResource


LANGUAGE_TABLE = dg.TableSchema(columns=[
    dg.TableColumn("language", "string"), dg.TableColumn("chunks", "int"),
    dg.TableColumn("files", "int"), dg.TableColumn("tokens", "int"),
])


@dg.op(out=dg.DynamicOut(), description="Plan shards of similar size over the discovered files.")
def split_files(context: dg.OpExecutionContext, config: ChunkingConfig, embedder: EmbedderResource, repo_files):
    model = embedder.build()  # cheap: the local model loads lazily
    max_tokens = resolve_max_tokens(model, config.max_tokens)
    workers = config.workers or os.cpu_count() or 1
    shards = plan_shards(file_items(repo_files), workers)
    context.log.info(f"{len(repo_files)} files in {len(shards)} shard(s) for {workers} worker(s), max_tokens={max_tokens}")
    attrs = {**repo_files.attrs, "max_tokens": max_tokens, "encoding": model.info.encoding,
             "started": time.time(), "bytes": int(repo_files["size_bytes"].sum()), "files": len(repo_files)}
    for i, shard in enumerate(shards):
        yield dg.DynamicOutput({"attrs": attrs, "files": shard}, mapping_key=f"shard_{i}")


@dg.op(description="Chunk the files of one shard.")
def chunk_files_shard(context: dg.OpExecutionContext, shard: dict):
    attrs = shard["attrs"]
    started = time.perf_counter()
    result = chunk_shard(attrs["root"], shard["files"], attrs["max_tokens"], attrs["encoding"])
    context.log.info(f"{len(result.chunks)} chunks from {len(shard['files'])} files in {time.perf_counter() - started:.1f}s")
    return {"attrs": attrs, "result": result}


@dg.op(description="Concatenate the shards into the chunk table.")
def collect_chunks(context: dg.OpExecutionContext, parts: list) -> dg.Output:
    attrs = parts[0]["attrs"]
    chunks, total = collect([p["result"] for p in parts])
    chunks.attrs = {k: attrs[k] for k in ("root", "commit", "tree", "repo", "max_tokens") if k in attrs}
    seconds = time.time() - attrs["started"]
    tokens = chunks["n_tokens"].to_numpy()
    by_language = chunks.groupby("language").agg(chunks=("chunk_id", "size"), files=("path", "nunique"),
                                                 tokens=("n_tokens", "sum")).reset_index()
    context.log.info(f"{len(chunks)} chunks from {attrs['files']} files in {seconds:.1f}s; failed {dict(total.failed)}")
    return dg.Output(
        chunks,
        metadata={
            "chunks": len(chunks),
            "files": attrs["files"],
            "files_chunked": int(chunks["path"].nunique()),
            "files_failed_by_reason": dict(total.failed),
            "files_failed_examples": total.examples,
            "secrets_redacted": dict(total.redacted),
            "files_with_secrets_redacted": total.files_redacted,
            "secrets_redacted_examples": total.redacted_examples,
            "shards": len(parts),
            "max_tokens": attrs["max_tokens"],
            "tokens": int(tokens.sum()),
            "tokens_p50": int(np.percentile(tokens, 50)) if len(tokens) else 0,
            "tokens_p95": int(np.percentile(tokens, 95)) if len(tokens) else 0,
            "tokens_max": int(tokens.max()) if len(tokens) else 0,
            "chunks_by_language": dg.MetadataValue.table(
                records=[dg.TableRecord({k: (v if k == "language" else int(v)) for k, v in row.items()})
                         for row in by_language.to_dict("records")],
                schema=LANGUAGE_TABLE,
            ),
            "seconds": round(seconds, 2),
            "files_per_second": round(attrs["files"] / seconds, 1) if seconds else 0.0,
            "mb_per_second": round(attrs["bytes"] / 1e6 / seconds, 2) if seconds else 0.0,
        },
    )


@dg.graph_asset(
    partitions_def=repositories,
    group_name="indexing",
    kinds={"python", "pandas"},
    description="Chunks along tree-sitter syntax boundaries, each within the token budget of the "
    "embedding model's tiktoken encoding; chunk ids are stable across unrelated edits. "
    "Fanned out over shards of files.",
)
def code_chunks(repo_files):
    return collect_chunks(split_files(repo_files).map(chunk_files_shard).collect())
