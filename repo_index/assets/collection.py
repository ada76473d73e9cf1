"""vector_collection: the repository's Chroma collection, synced to the current chunks,
with asset checks that read the collection back."""

import warnings

import dagster as dg
import pandas as pd

from ..core.chunk.table import ChunkTable
from ..core.disk_full import says_disk_full
from ..core.embed.model import EmbeddingModel
from ..core.embed.results import EmbedResult
from ..core.index.checks import check_consistency, pick_smoke_target, smoke_rank
from ..core.index.client import get_collection, write_lock
from ..core.index.lexical import LexicalIndex, lexical_path
from ..core.index.spans import spans_path
from ..core.index.sync import sync_collection
from ..core.search.query_vectors import embed_query
from ..partitions import CHROMA_POOL, repositories
from ..resources import ChromaResource, EmbedderResource, RunLeaseResource, VectorCacheResource

IN_STEP = "ids_match_chunks"
DIMENSIONS = "vector_dimensions"
SMOKE = "smoke_query"
SMOKE_TOP_K = 5


def _checks(collection, chunks: pd.DataFrame, chunk_ids: list[str], embeddings: EmbedResult,
            model: EmbeddingModel, embedder: EmbedderResource,
            vector_cache: VectorCacheResource, lexical: LexicalIndex) -> list[dg.AssetCheckResult]:
    """`chunks` and `chunk_ids`: the chunks the collection should hold (refused ones left out);
    `lexical`: the repository's lexical index, synced to them."""
    seen = check_consistency(collection, chunk_ids, embeddings.dimensions)
    lexical_ids = lexical.ids()
    refused = len(embeddings.refused)
    lexical_missing, lexical_orphaned = set(chunk_ids) - lexical_ids, lexical_ids - set(chunk_ids)
    problems = [f"{len(seen.missing)} chunks missing from the collection, {len(seen.orphaned)} records that are "
                "no current chunk"] * bool(seen.missing or seen.orphaned) + [
                f"{len(lexical_missing)} chunks missing from the lexical index, {len(lexical_orphaned)} entries "
                "that are no current chunk"] * bool(lexical_missing or lexical_orphaned)
    results = [
        dg.AssetCheckResult(
            check_name=IN_STEP, passed=not problems,
            description=("; ".join(problems) if problems
                         else f"{refused} chunks refused by the embedding server are left out" if refused
                         else None),
            metadata={"missing": len(seen.missing), "orphaned": len(seen.orphaned), "records": seen.records,
                      "chunks": len(embeddings.chunk_ids), "refused": refused, "missing_examples": seen.missing[:5],
                      "orphaned_examples": seen.orphaned[:5], "lexical_missing": len(lexical_missing),
                      "lexical_orphaned": len(lexical_orphaned), "lexical_entries": len(lexical_ids)},
        ),
        dg.AssetCheckResult(
            check_name=DIMENSIONS, passed=seen.wrong_dimensions == 0,
            description=(f"vectors do not have the model's {embeddings.dimensions} dimensions"
                         if seen.wrong_dimensions else None),
            metadata={"dimensions": embeddings.dimensions, "wrong": seen.wrong_dimensions, "sampled": seen.sampled,
                      "model": embeddings.model},
        ),
    ]
    target = pick_smoke_target(chunks)
    if target is None:
        results.append(dg.AssetCheckResult(check_name=SMOKE, passed=True,
                                           metadata={"skipped": "no named definition to look for"}))
        return results
    # chunk_embeddings put the query vector in the cache: no request from here (the embedder
    # is asked only if the cache lost it).
    with vector_cache.open() as cache:
        vector = embed_query(embedder.build(model), target.query, cache)
    rank, top = smoke_rank(collection, vector, target, lexical, SMOKE_TOP_K)
    expected = ", ".join(f"{path}:{a}-{b}" for path, (a, b) in sorted(target.spans.items()))
    reason = "" if rank else (f"no chunk of {target.symbol} ({expected}) among the top {SMOKE_TOP_K} for "
                              f"{target.query!r}: {'; '.join(top)}")
    results.append(dg.AssetCheckResult(
        check_name=SMOKE, passed=rank is not None, severity=dg.AssetCheckSeverity.WARN, description=reason or None,
        metadata={"query": target.query, "expected_symbol": target.symbol, "expected_lines": expected,
                  "rank": rank or 0, "top_k": SMOKE_TOP_K, "top_hits": "; ".join(top), "reason": reason},
    ))
    return results


def _check_specs() -> list[dg.AssetCheckSpec]:
    # Partitioned checks (a result per repository, so one repository's run does not replace
    # what the UI shows for another) are a preview in Dagster 1.13: chosen knowingly, and
    # its warning kept out of every CLI command's output.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(IN_STEP, asset="vector_collection", partitions_def=repositories,
                              description="The collection's ids and the lexical index's equal the current chunk ids "
                              "(missing / orphaned)."),
            dg.AssetCheckSpec(DIMENSIONS, asset="vector_collection", partitions_def=repositories,
                              description="Every vector has the embedding model's dimensions (read on a sample: "
                              "Chroma holds one dimensionality per collection)."),
            dg.AssetCheckSpec(SMOKE, asset="vector_collection", partitions_def=repositories,
                              description=f"A query for a distinctive definition finds a chunk covering its lines in "
                              f"the top {SMOKE_TOP_K}; a failure names the expected lines and what came instead."),
        ]


@dg.asset(
    partitions_def=repositories,
    group_name="indexing",
    kinds={"chromadb"},
    pool=CHROMA_POOL,
    check_specs=_check_specs(),
    description="One Chroma collection per repository holding exactly the current chunks (new ones "
    "added, vanished ones deleted, nothing embedded again), and its lexical index: every chunk's text, "
    "lines and names for search.",
)
def vector_collection(
    context: dg.AssetExecutionContext, chroma: ChromaResource, embedder: EmbedderResource,
    vector_cache: VectorCacheResource, run_lease: RunLeaseResource, code_chunks: ChunkTable,
    chunk_embeddings: EmbedResult,
) -> dg.MaterializeResult:
    run_lease.hold(context, code_chunks.repo)
    if not chunk_embeddings.has_vectors:
        raise dg.Failure("chunk_embeddings holds no vectors (estimate_only run?): materialize it without estimate_only")
    model = embedder.resolve()
    if (model.name, model.dimensions) != (chunk_embeddings.model, chunk_embeddings.dimensions):
        raise dg.Failure(f"chunk_embeddings were made with {chunk_embeddings.model} ({chunk_embeddings.dimensions} "
                         f"dims) but this run's model is {model.name} ({model.dimensions}): materialize "
                         "chunk_embeddings in this run too")
    settings = chroma.settings()
    name = settings.collection_name(context.partition_key)
    commit = code_chunks.version
    # Chunks the embedding server refused have no vector: the collection holds every other one.
    rows = chunk_embeddings.embedded_rows()
    chunks = code_chunks.chunks.iloc[rows].reset_index(drop=True) if chunk_embeddings.refused else code_chunks.chunks
    chunk_ids = [chunk_embeddings.chunk_ids[i] for i in rows]
    keys = [chunk_embeddings.keys[i] for i in rows]
    spans_file = spans_path(settings, name)
    written = [settings.path if settings.mode == "embedded" else "", spans_file.parent, settings.lexical_dir()]
    # The client is opened, written and checked with every other process kept out of an
    # embedded folder (index/client.py): even a search would write it while it changes.
    with says_disk_full(f"writing the collection {name}", written,
                        then="re-run: the collection is rebuilt from the embedding cache if it was damaged"), \
            write_lock(settings, context.log.info), vector_cache.open() as cache, \
            LexicalIndex(lexical_path(settings.lexical_dir(), name)) as lexical:
        # The lexical side first: it holds each chunk's place (lines, names) and text, which
        # search reads for every record the collection returns; a model change rebuilds only
        # the vectors.
        words = lexical.sync(chunks, chunk_ids)
        context.log.info(f"{name} lexical index: +{words.added} -{words.deleted} moved {words.moved}, "
                         f"{words.total} chunks")
        client = chroma.client()
        # The vectors stay in the cache: each write batch reads only its own rows.
        stats = sync_collection(
            client, name, chunks, chunk_ids,
            lambda rows: cache.matrix(model.name, model.dimensions, [keys[i] for i in rows]),
            model, commit, context.partition_key, spans_file=spans_file,
            store_text=False,  # the lexical index synced above holds each chunk's text for search
        )
        if stats.repaired:
            context.log.warning(f"{name} could not be read ({stats.repaired}): rebuilt from the chunks and the "
                                "cached vectors, nothing embedded again")
        context.log.info(f"{name}: +{stats.added} -{stats.deleted}, {stats.total} records"
                         + (f", {len(chunk_embeddings.refused)} chunks refused by the embedding server left out"
                            if chunk_embeddings.refused else ""))
        checks = _checks(get_collection(client, name), chunks, chunk_ids, chunk_embeddings, model, embedder,
                         vector_cache, lexical)
    run_lease.release(context, code_chunks.repo)  # the repository's state is in step: the next run may start
    return dg.MaterializeResult(
        metadata={
            "collection": name,
            "chroma_mode": settings.mode,
            "commit": commit,
            "records": stats.total,
            "refused_chunks_left_out": len(chunk_embeddings.refused),
            "added": stats.added,
            "deleted": stats.deleted,
            "moved": words.moved,
            "unchanged": stats.unchanged,
            "state_read_from": stats.spans_from,
            "rebuilt_for_new_model": stats.rebuilt,
            "rebuilt_unreadable": stats.repaired,
            "embedding_model": model.name,
            "embedding_provider": model.provider,
        },
        check_results=checks,
    )
