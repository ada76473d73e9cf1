"""Embedding providers: the response decoding, the OpenAI-compatible client against the
loopback server, and the local model running off the event loop."""

import asyncio
import base64
import time

import numpy as np
import pytest

from repo_index.core.embed.model import LOCAL, ModelError, from_collection_metadata, resolve_model
from repo_index.core.embed.providers import (
    EmbeddingResponseError, LocalEmbedder, OpenAIEmbedder, decode_embeddings_response, make_embedder, resolve_device,
)
from repo_index_tests.fakes.openai_server import fake_embedding


def payload(matrix: np.ndarray, encoding: str = "base64", order=None) -> dict:
    order = range(len(matrix)) if order is None else order
    return {"data": [{"object": "embedding", "index": i,
                      "embedding": base64.b64encode(matrix[i].astype("<f4").tobytes()).decode()
                      if encoding == "base64" else matrix[i].tolist()} for i in order]}


@pytest.mark.parametrize("dims", [1536, 256, 7])  # base64 rows with and without padding
@pytest.mark.parametrize("encoding", ["base64", "float"])
def test_responses_decode_to_float32_rows_in_input_order(dims, encoding):
    matrix = np.random.default_rng(1).standard_normal((5, dims)).astype(np.float32)
    decoded = decode_embeddings_response(payload(matrix, encoding, order=[3, 1, 4, 0, 2]), 5, dims)
    assert decoded.dtype == np.float32 and decoded.shape == (5, dims)
    np.testing.assert_array_equal(decoded, matrix)


def test_wrong_dimensions_are_an_error_that_retrying_cannot_fix():
    matrix = np.ones((3, 1535), np.float32)
    for encoding in ("base64", "float"):
        with pytest.raises(EmbeddingResponseError, match="expected vectors of 1536 dimensions") as err:
            decode_embeddings_response(payload(matrix, encoding), 3, 1536)
        assert not err.value.retryable


def test_wrong_count_bad_indexes_and_garbage_are_retryable_errors():
    matrix = np.ones((3, 8), np.float32)
    cases = [
        (payload(matrix)["data"][:2], "expected 3 vectors, got 2"),
        ([{**d, "index": 0} for d in payload(matrix)["data"]], "indexes"),
        ([{"index": i, "embedding": "@" * 44} for i in range(3)], "malformed"),  # 44: the length of 8 floats
    ]
    for data, message in cases:
        with pytest.raises(EmbeddingResponseError, match=message) as err:
            decode_embeddings_response({"data": data}, 3, 8)
        assert err.value.retryable
    with pytest.raises(EmbeddingResponseError, match="malformed"):
        decode_embeddings_response({"object": "list"}, 3, 8)


def test_openai_embedder_asks_for_shortened_base64_vectors(openai_server):
    texts = ["def parse_config(path): pass", "class HttpServer: ..."]

    async def run():
        embedder = OpenAIEmbedder(api_key="k", base_url=openai_server.base_url, requested_dimensions=256)
        try:
            return await embedder.embed(texts)
        finally:
            await embedder.aclose()

    vectors = asyncio.run(run())
    assert vectors.dtype == np.float32 and vectors.shape == (2, 256)
    np.testing.assert_allclose(vectors, np.vstack([fake_embedding(t, 256) for t in texts]), atol=1e-6)
    assert openai_server.api_keys == {"k"}


def test_local_device_is_cuda_only_when_present(monkeypatch):
    import torch

    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == "cpu"


def test_local_model_embeds_off_the_event_loop():
    embedder = make_embedder(resolve_model("local"))
    assert isinstance(embedder, LocalEmbedder) and embedder.max_concurrency == 1
    texts = [f"def handler_{i}(request): return respond(request, {i})" for i in range(96)]

    async def run():
        ticks = []

        async def ticker():
            while True:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.01)

        tick = asyncio.create_task(ticker())
        vectors = await embedder.embed(texts)
        tick.cancel()
        return vectors, ticks

    embedder.encode(["warm up"])  # load the model outside the measurement
    vectors, ticks = asyncio.run(run())
    assert vectors.dtype == np.float32 and vectors.shape == (96, LOCAL.dimensions)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # The loop kept running while the model worked (a blocking call would leave one tick).
    assert len(ticks) >= 3
    np.testing.assert_allclose(vectors[:2], embedder.encode(texts[:2]), atol=1e-5)


def test_chunk_budget_follows_the_embedder_and_refuses_what_it_cannot_read():
    local, openai = resolve_model("local"), resolve_model("openai")
    assert local.chunk_budget(None) == 200 and openai.chunk_budget(None) == 512
    assert openai.chunk_budget(2000) == 2000
    with pytest.raises(ValueError, match="exceeds what all-MiniLM-L6-v2 reads"):
        local.chunk_budget(512)
    with pytest.raises(ValueError, match="at least 32"):
        openai.chunk_budget(20)


def test_one_resolution_of_the_model_serves_indexing_and_search():
    # auto follows the API key; the embedder built from the answer has its dimensions.
    assert resolve_model("auto", has_api_key=False) == LOCAL
    small = resolve_model("auto", has_api_key=True, base_url="http://127.0.0.1:9/v1")
    assert (small.provider, small.name, small.dimensions, small.base_url) == (
        "openai", "text-embedding-3-small", 1536, "http://127.0.0.1:9/v1")
    assert make_embedder(small, api_key="k").dimensions == 1536
    # Shortened text-embedding-3 vectors are asked of the server; the collection records them
    # and search resolves exactly the same model back from that record.
    short = resolve_model("openai", "text-embedding-3-large", 256, "http://user:pw@h:1/v1")
    assert short.send_dimensions and short.dimensions == 256
    meta = short.collection_metadata()
    assert "pw" not in str(meta) and meta["embedding_base_url"] == "http://h:1/v1"
    assert from_collection_metadata(meta, "http://user:pw@h:1/v1") == short
    # A model repo_index does not know (served by a compatible server) needs its size, and then
    # has that size when indexing and when searching (it used to get 1,536 and 384).
    with pytest.raises(ModelError, match="REPO_INDEX_EMBEDDING_DIMENSIONS"):
        resolve_model("openai", "nomic-embed-code")
    nomic = resolve_model("openai", "nomic-embed-code", 768, "http://h:1/v1")
    assert not nomic.send_dimensions
    assert make_embedder(nomic, api_key="k").dimensions == 768
    assert from_collection_metadata(nomic.collection_metadata()) == nomic
    assert from_collection_metadata(LOCAL.collection_metadata()) == LOCAL
    # Collections written before the provider was recorded still resolve.
    assert from_collection_metadata({"embedding_model": "all-MiniLM-L6-v2", "dimensions": 384}) == LOCAL
    with pytest.raises(ModelError, match="cannot shorten"):
        resolve_model("openai", "text-embedding-ada-002", 256)
    # A local model that is not on this machine is named with the setting that chose it.
    with pytest.raises(ModelError, match="REPO_INDEX_LOCAL_MODEL='text-embedding-3-small': no such model in the "
                       "Hugging Face cache"):
        resolve_model("local", "text-embedding-3-small")
