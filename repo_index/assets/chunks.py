"""code_chunks: a graph-backed asset that fans chunking out over step processes.

split_files compares the files' sha256 with the stored table (core/chunk/table.py) and
plans a few large shards of the files that changed (about 2 × workers, at least
MIN_FILES_PER_SHARD files each; none when fewer changed) as dynamic outputs;
chunk_files_shard runs once per shard, in parallel under the multiprocess executor (or
Celery/Kubernetes, unchanged); collect_chunks concatenates them with the stored chunks
of unchanged files into the chunk table and records the metadata. The table is stored by
`ChunkTableIOManager`, which is what the next run reuses from.
"""

import os
import time

import dagster as dg
import numpy as np

from ..config import ChunkingConfig
from ..core.embed.providers import resolve_max_tokens
from ..core.chunk.table import chunk_params, load_header, reusable_files, reused_rows, table_path
from ..core.chunk.repository import MIN_FILES_PER_SHARD, chunk_shard, collect, file_items, plan_shards
from ..partitions import repositories
from ..resources import EmbedderResource

CHUNKS_IO_MANAGER = "chunks_io_manager"


LANGUAGE_TABLE = dg.TableSchema(columns=[
    dg.TableColumn("language", "string"), dg.TableColumn("chunks", "int"),
    dg.TableColumn("files", "int"), dg.TableColumn("tokens", "int"),
])


@dg.op(out={"plan": dg.Out(description="What the run chunks and with which parameters."),
             "shards": dg.DynamicOut(description="Files to chunk, in shards of similar size.")},
       description="Plan shards of similar size over the files whose chunks cannot be reused.")
def split_files(context: dg.OpExecutionContext, config: ChunkingConfig, embedder: EmbedderResource, repo_files):
    model = embedder.build()  # cheap: the local model loads lazily
    max_tokens = resolve_max_tokens(model, config.max_tokens)
    params = chunk_params(max_tokens, model.info.encoding)
    reuse = reusable_files(repo_files, load_header(table_path(repo_files.attrs["repo"])), params)
    to_chunk = repo_files[~repo_files["path"].isin(reuse)]
    workers = config.workers or os.cpu_count() or 1
    # A few files are chunked by collect_chunks itself: a step process costs more than they do.
    shards = plan_shards(file_items(to_chunk), workers) if len(to_chunk) >= MIN_FILES_PER_SHARD else []
    context.log.info(f"{len(repo_files)} files: {len(reuse)} unchanged (chunks reused), {len(to_chunk)} to chunk "
                     f"in {len(shards)} shard(s) for {workers} worker(s), max_tokens={max_tokens}")
    yield dg.Output({**repo_files.attrs, "params": params, "started": time.time()}, "plan")
    root = repo_files.attrs["root"]
    for i, shard in enumerate(shards):
        yield dg.DynamicOutput({"root": root, "params": params, "files": shard}, mapping_key=f"shard_{i}",
                               output_name="shards")


@dg.op(description="Chunk the files of one shard.")
def chunk_files_shard(context: dg.OpExecutionContext, shard: dict):
    params, started = shard["params"], time.perf_counter()
    result = chunk_shard(shard["root"], shard["files"], params["max_tokens"], params["encoding"])
    context.log.info(f"{len(result.chunks)} chunks from {len(shard['files'])} files in {time.perf_counter() - started:.1f}s")
    return {"paths": [path for path, _ in shard["files"]], "result": result}


@dg.op(out=dg.Out(io_manager_key=CHUNKS_IO_MANAGER), description="Concatenate the shards and the reused "
       "chunks of unchanged files into the chunk table.")
def collect_chunks(context: dg.OpExecutionContext, repo_files, plan: dict, parts: list) -> dg.Output:
    attrs, params = plan, plan["params"]
    chunked = {path for part in parts for path in part["paths"]}
    unchanged = repo_files[~repo_files["path"].isin(chunked)]
    reused = reused_rows(table_path(attrs["repo"]), unchanged, params) if len(unchanged) else None
    results = [part["result"] for part in parts]
    # Chunked here: too few changed files for a shard, and files planned for reuse whose
    # rows are gone (another run of this repository rewrote the table since the plan).
    have = set() if reused is None else set(reused["path"].unique())
    missing = unchanged[~unchanged["path"].isin(have)]
    if len(missing):
        results.append(chunk_shard(attrs["root"], list(zip(missing["path"], missing["language"])),
                                   params["max_tokens"], params["encoding"]))
    chunks, total = collect(results, reused)
    chunks.attrs = {k: attrs[k] for k in ("root", "commit", "tree", "repo") if k in attrs}
    chunks.attrs["chunk_params"] = params  # stored with the table: what the next run's reuse compares
    files_chunked = len(repo_files) - len(have)
    seconds = time.time() - attrs["started"]
    tokens = chunks["n_tokens"].to_numpy()
    by_language = chunks.groupby("language").agg(chunks=("chunk_id", "size"), files=("path", "nunique"),
                                                 tokens=("n_tokens", "sum")).reset_index()
    context.log.info(f"{len(chunks)} chunks from {len(repo_files)} files ({files_chunked} chunked, {len(have)} reused) "
                     f"in {seconds:.1f}s; failed {dict(total.failed)}, cut by lines {dict(total.by_lines)}")
    return dg.Output(
        chunks,
        metadata={
            "chunks": len(chunks),
            "files": len(repo_files),
            "files_with_chunks": int(chunks["path"].nunique()),
            "files_chunked": files_chunked,
            "files_reused": len(have),
            "files_failed_by_reason": dict(total.failed),
            "files_failed_examples": total.examples,
            "files_chunked_by_lines_by_reason": dict(total.by_lines),
            "secrets_redacted": dict(total.redacted),
            "files_with_secrets_redacted": total.files_redacted,
            "secrets_redacted_examples": total.redacted_examples,
            "shards": len(parts),
            "max_tokens": params["max_tokens"],
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
            "files_per_second": round(len(repo_files) / seconds, 1) if seconds else 0.0,
            "mb_per_second": round(int(repo_files["size_bytes"].sum()) / 1e6 / seconds, 2) if seconds else 0.0,
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
    plan, shards = split_files(repo_files)
    return collect_chunks(repo_files, plan, shards.map(chunk_files_shard).collect())
