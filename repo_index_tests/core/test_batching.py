"""The embedding loop against a real OpenAI-compatible HTTP server on loopback."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repo_index.core.batching import EmbeddingFailed, embed_chunks, pack_requests
from repo_index.core.chunker import embedding_text
from repo_index.core.embedders import OpenAIEmbedder
from repo_index.core.vector_cache import VectorCache
from repo_index_tests.fakes.openai_server import Fault, fake_embedding


def chunk_table(n: int, prefix: str = "item") -> pd.DataFrame:
    rows = [(f"id{i}", f"src/m{i % 7}.py", "python", i, i, f"f{i}", 12, f"def {prefix}_{i}(): return {i}", f"h{i}")
            for i in range(n)]
    return pd.DataFrame(rows, columns=["chunk_id", "path", "language", "start_line", "end_line", "symbol",
                                       "n_tokens", "text", "content_hash"])


def embedder_for(server, **kw) -> OpenAIEmbedder:
    return OpenAIEmbedder(api_key="test-key", base_url=server.base_url, timeout_s=kw.pop("timeout_s", 5), **kw)


def expected(chunks: pd.DataFrame, dims: int = 1536) -> np.ndarray:
    return np.vstack([fake_embedding(embedding_text(p, s, t), dims)
                      for p, s, t in zip(chunks["path"], chunks["symbol"], chunks["text"])])


def test_order_concurrency_and_batching(openai_server):
    openai_server.latency = 0.05
    chunks = chunk_table(230)
    result = embed_chunks(chunks, embedder_for(openai_server), max_concurrent=3, batch_size=10)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (230, 1536)
    np.testing.assert_allclose(result.vectors, expected(chunks), atol=1e-6)
    assert result.chunk_ids == list(chunks["chunk_id"])
    assert openai_server.requests_total == 23 and result.stats.requests == 23
    assert openai_server.max_in_flight == 3


def test_transient_faults_end_with_every_vector_correct(openai_server):
    openai_server.add_faults(Fault.status(429, retry_after=0.1), Fault.status(500), Fault.status(503),
                             Fault.drop(), Fault.timeout(3.0), Fault.malformed(), Fault.wrong_count())
    chunks = chunk_table(40)
    result = embed_chunks(chunks, embedder_for(openai_server, timeout_s=1.0), max_concurrent=2, batch_size=10)
    np.testing.assert_allclose(result.vectors, expected(chunks), atol=1e-6)
    assert result.stats.retries == 7
    assert sorted(openai_server.embedded_counts.values())[0] >= 1


def test_persistent_wrong_dimensions_fail_loudly(openai_server):
    openai_server.always(Fault.wrong_dims())
    with pytest.raises(EmbeddingFailed, match="dimensions"):
        embed_chunks(chunk_table(5), embedder_for(openai_server), max_retries=2)


def test_request_too_large_is_split(openai_server):
    openai_server.max_tokens_per_request = 60  # each text is ~10-15 approximate tokens
    chunks = chunk_table(16)
    result = embed_chunks(chunks, embedder_for(openai_server), batch_size=16)
    np.testing.assert_allclose(result.vectors, expected(chunks), atol=1e-6)
    assert result.stats.splits >= 1


def test_cache_reuse_makes_zero_requests_and_only_changed_chunks_are_sent(openai_server, tmp_path: Path):
    chunks = chunk_table(50)
    with VectorCache(tmp_path / "cache.sqlite") as cache:
        first = embed_chunks(chunks, embedder_for(openai_server), cache, owner="svc")
        assert first.stats.embedded == 50
        openai_server.reset_counters()

        again = embed_chunks(chunks, embedder_for(openai_server), cache, owner="svc")
        assert openai_server.requests_total == 0 and again.stats.reused == 50
        np.testing.assert_array_equal(again.vectors, first.vectors)

        edited = chunks.copy()
        edited.loc[3, "text"] = "def item_3(): return 'changed'"
        third = embed_chunks(edited, embedder_for(openai_server), cache, owner="svc")
        assert openai_server.embedded_texts == [embedding_text("src/m3.py", "f3", "def item_3(): return 'changed'")]
        assert third.stats.pruned == 1  # the old text of chunk 3 is used by no one now
        assert cache.count() == 50


def test_identical_texts_are_embedded_once(openai_server):
    chunks = chunk_table(10)
    chunks["text"], chunks["path"], chunks["symbol"] = "same", "a.py", ""
    result = embed_chunks(chunks, embedder_for(openai_server))
    assert openai_server.inputs_embedded == 1 and result.stats.unique_texts == 1
    assert (result.vectors == result.vectors[0]).all()


def test_estimate_only_sends_nothing(openai_server):
    result = embed_chunks(chunk_table(30), embedder_for(openai_server), estimate_only=True)
    assert openai_server.requests_total == 0
    assert result.stats.tokens == 30 * 12 and result.stats.estimated_usd == pytest.approx(360 / 1e6 * 0.02)


def test_pack_requests_respects_inputs_and_tokens():
    assert pack_requests([5, 5, 5, 5, 5], max_inputs=2, max_tokens=100) == [[0, 1], [2, 3], [4]]
    assert pack_requests([60, 50, 10, 200], max_inputs=10, max_tokens=100) == [[0], [1, 2], [3]]
