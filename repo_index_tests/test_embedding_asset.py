"""chunk_embeddings materialized by Dagster against the loopback OpenAI server: metadata,
progress in the run log, reuse across runs, and vectors stored once (the IO manager keeps
cache keys; the downstream asset gets them once every vector is checked to be in the cache)."""

import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from repo_index.assets.embeddings import chunk_embeddings
from repo_index.core.chunk.records import embedding_text
from repo_index.core.chunk.table import ChunkTable
from repo_index.core.embed.cache import VectorCache, open_vector_cache
from repo_index.core.embed.stored import load_result
from repo_index.core.settings import get_settings
from repo_index import io_managers
from repo_index.io_managers import EmbeddingsIOManager
from repo_index.partitions import REPOSITORIES, repositories
from repo_index.resources import EmbedderResource, RunLeaseResource, VectorCacheResource
from repo_index_tests import cache_backends
from repo_index_tests.fakes.openai_server import Fault, fake_embedding

REPO = "demo"


def chunk_table(n: int, changed: dict[int, str] | None = None) -> pd.DataFrame:
    changed = changed or {}
    rows = [(f"id{i}", f"src/m{i % 5}.py", "python", i, i, f"f{i}", f"f{i}", f"f{i}", 12,
             changed.get(i, f"def f{i}(): return {i}"), "")
            for i in range(n)]
    return pd.DataFrame(rows, columns=["chunk_id", "path", "language", "start_line", "end_line", "symbol",
                                       "defines", "header", "n_tokens", "text", "content_hash"])


class Project:
    """A stand-in `code_chunks` (whatever table the test sets), the real `chunk_embeddings`,
    and a downstream asset that records what it loads, on a temp Dagster instance."""

    def __init__(self, tmp_path: Path, server):
        self.server, self.chunks, self.loaded = server, chunk_table(0), []
        (tmp_path / "dagster").mkdir()
        self.instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
        self.instance.add_dynamic_partitions(REPOSITORIES, [REPO])
        self.keys_dir = tmp_path / "keys"
        self.cache_path = tmp_path / "data" / "embeddings.sqlite"
        project = self

        @dg.asset(partitions_def=repositories)
        def code_chunks(context) -> ChunkTable:
            return ChunkTable(context.partition_key, "c0", "", {}, project.chunks.copy())

        @dg.asset(partitions_def=repositories)
        def downstream(chunk_embeddings) -> None:
            project.loaded.append(chunk_embeddings)

        self.assets = [code_chunks, chunk_embeddings, downstream]
        self.downstream = downstream

    def materialize(self, selection=None, **config) -> dg.ExecuteInProcessResult:
        cache = VectorCacheResource(path=str(self.cache_path))
        resources = {
            "embedder": EmbedderResource(provider="openai", base_url=self.server.base_url),
            "vector_cache": cache,
            "run_lease": RunLeaseResource(folder=str(self.keys_dir.parent / "runs")),
            "embeddings_io_manager": EmbeddingsIOManager(base_dir=str(self.keys_dir), cache=cache),
        }
        run_config = {"ops": {"chunk_embeddings": {"config": config}}} if config else None
        return dg.materialize(self.assets, instance=self.instance, partition_key=REPO, resources=resources,
                              run_config=run_config, selection=selection, raise_on_error=False)

    def metadata(self, result: dg.ExecuteInProcessResult) -> dict:
        [mat] = [m for m in result.asset_materializations_for_node("chunk_embeddings")]
        return {k: v.value for k, v in mat.metadata.items()}

    def messages(self, result: dg.ExecuteInProcessResult) -> list[str]:
        return [e.user_message for e in self.instance.all_logs(result.run_id) if e.user_message]


@pytest.fixture
def project(tmp_path, openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # read where it is used, never in Dagster's config
    return Project(tmp_path, openai_server)


def expected(chunks: pd.DataFrame) -> np.ndarray:
    return np.vstack([fake_embedding(embedding_text(p, s, t))
                      for p, s, t in zip(chunks["path"], chunks["header"], chunks["text"])])


def stored_matrix(project: Project) -> np.ndarray:
    """The float32 matrix of the stored chunk_embeddings, rebuilt from the cache as a tool would."""
    with VectorCache(project.cache_path) as cache:
        return load_result(project.keys_dir / "chunk_embeddings" / f"{REPO}.npz", cache, with_vectors=True).vectors


def test_materialization_embeds_logs_progress_and_stores_vectors_once(project, openai_server, tmp_path):
    openai_server.latency = 0.02
    project.chunks = chunk_table(200)
    result = project.materialize(batch_size=10, max_concurrent=2)
    assert result.success

    meta = project.metadata(result)
    assert (meta["embedded"], meta["reused"], meta["requests"], meta["retries"]) == (200, 0, 20, 0)
    assert meta["tokens"] == 200 * 12 and meta["estimated_usd"] == pytest.approx(2400 / 1e6 * 0.02)
    assert meta["chunks_per_second"] > 0 and meta["seconds"] > 0

    [loaded] = project.loaded
    assert loaded.chunk_ids == list(project.chunks["chunk_id"])
    assert loaded.vectors is None and loaded.has_vectors  # no matrix in memory: the vectors are in the cache
    matrix = stored_matrix(project)
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, expected(project.chunks), atol=1e-6)

    progress = [m for m in project.messages(result) if m.startswith("embedded ") and "chunks/s" in m]
    assert len(progress) >= 10 and "(100%)" in progress[-1]

    # The vectors (200 x 1536 float32 = 1.2 MB) live in the cache only: everything Dagster
    # and the IO manager stored together is a small fraction of them.
    outputs = [f for d in (tmp_path / "dagster" / "storage", project.keys_dir) for f in d.rglob("*") if f.is_file()]
    assert any(f.suffix == ".npz" for f in outputs)
    assert sum(f.stat().st_size for f in outputs) < matrix.nbytes / 10


def test_unchanged_rerun_makes_no_request_and_an_edit_only_one(project, openai_server):
    project.chunks = chunk_table(50)
    assert project.materialize().success
    openai_server.reset_counters()

    again = project.materialize()
    assert openai_server.requests_total == 0
    meta = project.metadata(again)
    assert (meta["embedded"], meta["reused"], meta["requests"]) == (0, 50, 0)

    project.chunks = chunk_table(50, changed={7: "def f7(): return 'seven'"})
    edited = project.materialize()
    assert openai_server.embedded_texts == [embedding_text("src/m2.py", "f7", "def f7(): return 'seven'")]
    assert project.metadata(edited)["pruned_cache_entries"] == 1
    np.testing.assert_allclose(stored_matrix(project), expected(project.chunks), atol=1e-6)


def test_estimate_only_sends_nothing_and_records_the_cost(project, openai_server):
    project.chunks = chunk_table(30)
    result = project.materialize(estimate_only=True)
    assert result.success and openai_server.requests_total == 0
    meta = project.metadata(result)
    assert meta["estimate_only"] and meta["tokens"] == 360 and meta["requests"] == 0
    assert project.loaded[-1].vectors.shape == (0, 1536) and not project.loaded[-1].has_vectors


def test_a_request_slower_than_the_run_timeout_is_abandoned_and_retried(project, openai_server):
    project.chunks = chunk_table(20)
    openai_server.add_faults(Fault.timeout(30.0))  # the first request hangs for 30 s
    result = project.materialize(request_timeout_s=1.0, batch_size=10, max_concurrent=1)
    assert result.success
    meta = project.metadata(result)
    assert meta["retries"] == 1 and meta["errors_by_kind"] == {"network": 1}
    assert meta["seconds"] < 20  # given up after the run's 1 s, not the default 60 s
    np.testing.assert_allclose(stored_matrix(project), expected(project.chunks), atol=1e-6)


@pytest.mark.timeout(120)  # a client bounding each read only waits for the drip for hours: fail, not hang
def test_a_response_dripping_in_fails_the_run_at_the_request_deadline(project, openai_server):
    project.chunks = chunk_table(20)
    openai_server.always(Fault.drip(0.2))  # a byte every 0.2 s: no read ever times out
    started = time.monotonic()
    result = project.materialize(request_timeout_s=1.0, max_retries=2, batch_size=20)
    assert not result.success
    assert time.monotonic() - started < 30
    failure = next(e for e in result.all_events if e.is_step_failure)
    text = str(failure.step_failure_data.error)
    assert "after 2 retries" in text and "within the 1 s deadline of one embedding request" in text, text
    assert openai_server.requests_total == 3


def test_loading_without_the_vectors_fails_with_what_to_do(project, tmp_path):
    project.chunks = chunk_table(5)
    assert project.materialize().success
    (tmp_path / "data" / "embeddings.sqlite").unlink()  # the cache is gone (e.g. `make clean`)
    for wal in (tmp_path / "data").glob("embeddings.sqlite-*"):
        wal.unlink()

    result = project.materialize(selection=[project.downstream])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    text = str(failure.step_failure_data.error)
    assert "Re-materialize chunk_embeddings for partition 'demo'" in text
    assert "5 of the vectors it references are not in the embedding cache" in text


def test_the_next_step_of_the_same_run_takes_the_stored_result_without_checking_it_again(project, monkeypatch):
    project.chunks = chunk_table(5)
    loads = []
    real = io_managers.load_result
    monkeypatch.setattr(io_managers, "load_result", lambda *a, **kw: loads.append(a) or real(*a, **kw))
    assert project.materialize().success and loads == []  # one run, one process: checked when stored
    assert project.materialize(selection=[project.downstream]).success and len(loads) == 1  # another run checks
    kept, checked = project.loaded[-2:]
    assert (kept.chunk_ids, kept.keys, kept.model, kept.vectors, kept.stats) == (
        checked.chunk_ids, checked.keys, checked.model, checked.vectors, checked.stats)


postgres_port, postgres_url = cache_backends.postgres_port, cache_backends.postgres_url
CACHE_PASSWORD = "pw-3b8e1a90c7"


def test_with_a_cache_url_runs_share_postgresql_and_write_no_sqlite_file(project, openai_server, postgres_url,
                                                                          monkeypatch, tmp_path):
    # The test server trusts local connections: the password is accepted and ignored.
    monkeypatch.setenv("REPO_INDEX_CACHE_URL", postgres_url.replace("dagster@", f"dagster:{CACHE_PASSWORD}@"))
    project.chunks = chunk_table(50)
    first = project.materialize()
    assert first.success
    assert sorted(p.name for p in tmp_path.rglob("embeddings.sqlite*")) == []  # the resource's path is not used
    assert project.metadata(first)["embedded"] == 50

    openai_server.reset_counters()
    again = project.materialize()  # the downstream step loads every vector from PostgreSQL too
    assert again.success and openai_server.requests_total == 0
    assert (project.metadata(again)["embedded"], project.metadata(again)["reused"]) == (0, 50)
    with open_vector_cache(get_settings()) as cache:
        assert cache.count() == 50 and cache.owners() == {REPO: 50}
        stored = load_result(project.keys_dir / "chunk_embeddings" / f"{REPO}.npz", cache, with_vectors=True)
    np.testing.assert_allclose(stored.vectors, expected(project.chunks), atol=1e-6)
    # The URL is read in the step's process, never put into Dagster's config or run storage.
    stored_bytes = b"".join(f.read_bytes() for f in (tmp_path / "dagster").rglob("*") if f.is_file())
    assert CACHE_PASSWORD.encode() not in stored_bytes and postgres_url.rsplit("/", 1)[1].encode() not in stored_bytes
