"""code_chunks: a graph-backed asset that fans chunking out over step processes.

split_files compares the files' sha256 with the stored table (core/chunk/table.py) and
plans a few large shards of the files that changed (about 2 × workers, at least
MIN_FILES_PER_SHARD files each; none when fewer changed) as dynamic outputs;
chunk_files_shard runs once per shard, in parallel under the multiprocess executor (or
Celery/Kubernetes, unchanged); collect_chunks concatenates them with the stored chunks
of unchanged files into the chunk table and records the metadata. The table is stored by
`ChunkTableIOManager`, which is what the next run reuses from. The chunk budget and its
tokenizer come from the run's one resolved embedding model (EmbedderResource.resolve).
"""

import os
import time
from dataclasses import dataclass

import dagster as dg
import numpy as np

from ..config import ChunkingConfig
from ..core.chunk.repository import MIN_FILES_PER_SHARD, ShardResult, chunk_shard, collect, file_items, plan_shards
from ..core.chunk.table import ChunkTable, chunk_params, reusable_files
from ..core.source.snapshot import SourceFiles
from ..partitions import repositories
from ..resources import ChunkStoreResource, EmbedderResource, RegistryResource, RunLeaseResource

CHUNKS_IO_MANAGER = "chunks_io_manager"


@dataclass(frozen=True)
class ChunkPlan:
    params: dict  # max_tokens, encoding, chunker fingerprint: what the stored table's reuse compares
    started: float  # unix time the plan was made (the metadata's seconds)


@dataclass(frozen=True)
class Shard:
    root: str  # where repo_files read the files (on a cluster, maybe another machine's clone)
    repo: str
    commit: str  # what the files are read at: the step checks it out where its clone is not
    params: dict
    files: list[tuple[str, str]]  # (path, language)
    max_file_bytes: int  # discovery's bound: a file grown past it since is skipped, not read


@dataclass(frozen=True)
class ShardChunks:
    paths: list[str]  # the shard's files, chunked or failed
    result: ShardResult


LANGUAGE_TABLE = dg.TableSchema(columns=[
    dg.TableColumn("language", "string"), dg.TableColumn("chunks", "int"),
    dg.TableColumn("files", "int"), dg.TableColumn("tokens", "int"),
])


@dg.op(out={"plan": dg.Out(description="What the run chunks and with which parameters."),
             "shards": dg.DynamicOut(description="Files to chunk, in shards of similar size.")},
       description="Plan shards of similar size over the files whose chunks cannot be reused.")
def split_files(context: dg.OpExecutionContext, config: ChunkingConfig, embedder: EmbedderResource,
                chunk_store: ChunkStoreResource, run_lease: RunLeaseResource, repo_files: SourceFiles):
    run_lease.hold(context, repo_files.repo)
    model = embedder.resolve()
    max_tokens = model.chunk_budget(config.max_tokens)
    params = chunk_params(max_tokens, model.encoding)
    files = repo_files.files
    reuse = reusable_files(files, chunk_store.store().header(repo_files.repo), params)
    to_chunk = files[~files["path"].isin(reuse)]
    workers = config.workers or os.cpu_count() or 1
    # A few files are chunked by collect_chunks itself: a step process costs more than they do.
    shards = plan_shards(file_items(to_chunk), workers) if len(to_chunk) >= MIN_FILES_PER_SHARD else []
    context.log.info(f"{len(files)} files: {len(reuse)} unchanged (chunks reused), {len(to_chunk)} to chunk "
                     f"in {len(shards)} shard(s) for {workers} worker(s), max_tokens={max_tokens} "
                     f"({model.encoding}, for {model.name})")
    yield dg.Output(ChunkPlan(params, time.time()), "plan")
    for i, shard in enumerate(shards):
        yield dg.DynamicOutput(Shard(repo_files.root, repo_files.repo, repo_files.commit, params, shard,
                                     repo_files.max_file_bytes),
                               mapping_key=f"shard_{i}", output_name="shards")


@dg.op(description="Chunk the files of one shard.")
def chunk_files_shard(context: dg.OpExecutionContext, registry: RegistryResource, shard: Shard) -> ShardChunks:
    started = time.perf_counter()
    root = registry.root_at(shard.repo, shard.commit, shard.root)
    result = chunk_shard(root, shard.files, shard.params["max_tokens"], shard.params["encoding"],
                         shard.max_file_bytes)
    context.log.info(f"{len(result.chunks)} chunks from {len(shard.files)} files in {time.perf_counter() - started:.1f}s")
    return ShardChunks([path for path, _ in shard.files], result)


@dg.op(out=dg.Out(io_manager_key=CHUNKS_IO_MANAGER), description="Concatenate the shards and the reused "
       "chunks of unchanged files into the chunk table.")
def collect_chunks(context: dg.OpExecutionContext, chunk_store: ChunkStoreResource, registry: RegistryResource,
                   run_lease: RunLeaseResource, repo_files: SourceFiles, plan: ChunkPlan, parts: list[ShardChunks]) -> dg.Output:
    run_lease.hold(context, repo_files.repo)
    params, files = plan.params, repo_files.files
    chunked = {path for part in parts for path in part.paths}
    unchanged = files[~files["path"].isin(chunked)]
    reused = chunk_store.store().reused_rows(repo_files.repo, unchanged, params) if len(unchanged) else None
    results = [part.result for part in parts]
    # Chunked here: too few changed files for a shard, and files planned for reuse whose
    # rows are gone (another run of this repository rewrote the table since the plan).
    have = set() if reused is None else set(reused["path"].unique())
    missing = unchanged[~unchanged["path"].isin(have)]
    if len(missing):
        root = registry.root_at(repo_files.repo, repo_files.commit, repo_files.root)
        results.append(chunk_shard(root, list(zip(missing["path"], missing["language"])),
                                   params["max_tokens"], params["encoding"], repo_files.max_file_bytes))
    chunks, total = collect(results, reused)
    # The secrets of the reused files, as counted when they were chunked (ChunkTable.redactions).
    stored = (chunk_store.store().header(repo_files.repo) or {}).get("redactions", {}) if have else {}
    total.add_redactions({path: stored[path] for path in have if path in stored})
    files_chunked = len(files) - len(have)
    seconds = time.time() - plan.started
    tokens = chunks["n_tokens"].to_numpy()
    by_language = chunks.groupby("language").agg(chunks=("chunk_id", "size"), files=("path", "nunique"),
                                                 tokens=("n_tokens", "sum")).reset_index()
    context.log.info(f"{len(chunks)} chunks from {len(files)} files ({files_chunked} chunked, {len(have)} reused) "
                     f"in {seconds:.1f}s; skipped {dict(total.skipped)}, failed {dict(total.failed)}, "
                     f"cut by lines {dict(total.by_lines)}")
    table = ChunkTable(repo_files.repo, repo_files.commit, repo_files.tree, params, chunks, total.file_redactions)
    return dg.Output(
        table,
        metadata={
            "chunks": len(chunks),
            "files": len(files),
            "files_with_chunks": int(chunks["path"].nunique()),
            "files_chunked": files_chunked,
            "files_reused": len(have),
            # Changed since repo_files looked at them (grown, a FIFO or symlink now, gone), by
            # repo_files' reasons; the examples of both are in files_failed_examples.
            "files_skipped_by_reason": dict(total.skipped),
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
            "files_per_second": round(len(files) / seconds, 1) if seconds else 0.0,
            "mb_per_second": round(int(files["size_bytes"].sum()) / 1e6 / seconds, 2) if seconds else 0.0,
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
