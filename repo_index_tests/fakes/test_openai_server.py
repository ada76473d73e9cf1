"""The fake OpenAI server, exercised through the real `openai` client over real HTTP."""

import asyncio
import base64
import json
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import openai
import pytest

from repo_index_tests.fakes.openai_server import FakeOpenAIServer, Fault, fake_embedding, words

MODEL = "text-embedding-3-small"
TEXTS = ["def parse_config_file(path):\n    return yaml.safe_load(open(path))",
         "class HTTPServerV2: pass", "the quick brown fox"]


@pytest.fixture
def client(openai_server):
    with openai.OpenAI(api_key="test-key", base_url=openai_server.base_url, max_retries=0) as c:
        yield c


def async_client(server, **kw):
    return openai.AsyncOpenAI(api_key="test-key", base_url=server.base_url, **{"max_retries": 0, **kw})


def post(server, body, auth="Bearer test-key"):
    headers = {"Authorization": auth} if auth is not None else {}
    return httpx.post(f"{server.base_url}/embeddings", json=body, headers=headers, timeout=10)


# -- embeddings ----------------------------------------------------------------


def test_fake_embedding_is_deterministic_normalised_and_splits_identifiers():
    v = fake_embedding("parseConfigFile", 64)
    assert v.dtype == np.float32 and v.shape == (64,)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-6)
    assert words("HTTPServerV2 parse_config_file") == ["http", "server", "v", "2", "parse", "config", "file"]
    # Same words however the identifier is spelled -> same vector.
    for same in ("parse_config_file", "parse config file", "PARSE-CONFIG-FILE"):
        np.testing.assert_allclose(fake_embedding(same, 64), v)
    assert np.linalg.norm(fake_embedding("!!!", 8)) == pytest.approx(1.0)  # no words: still a unit vector


def test_similarity_ranks_texts_sharing_words_first():
    q = fake_embedding("parse config file", 1536)
    hit = fake_embedding(TEXTS[0], 1536)
    others = [fake_embedding(t, 1536) for t in TEXTS[1:] + ["async def fetch_url(session, url): ..."]]
    assert q @ hit > 0.4  # 3 shared words out of 11 (path twice)
    assert all(q @ hit > q @ o + 0.4 for o in others)


def test_float_and_base64_decode_to_fake_embedding(client, openai_server):
    as_float = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    as_default = client.embeddings.create(model=MODEL, input=TEXTS)  # the client asks base64 and decodes
    as_b64 = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="base64")  # left as str
    for i, text in enumerate(TEXTS):
        expected = fake_embedding(text, 1536)
        np.testing.assert_allclose(as_float.data[i].embedding, expected, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(as_default.data[i].embedding, np.float32), expected)
        raw = as_b64.data[i].embedding
        assert isinstance(raw, str)
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(raw), "<f4"), expected)
    assert as_float.model == MODEL and as_float.object == "list"
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens == sum(-(-len(t) // 4) for t in TEXTS)
    assert openai_server.requests_ok == 3 and openai_server.embedded_counts[TEXTS[0]] == 3


def test_dimensions_and_default_sizes(client):
    r = client.embeddings.create(model=MODEL, input="hello world", dimensions=256)
    np.testing.assert_array_equal(np.float32(r.data[0].embedding), fake_embedding("hello world", 256))
    assert len(client.embeddings.create(model="text-embedding-3-large", input="x").data[0].embedding) == 3072
    assert len(client.embeddings.create(model="text-embedding-ada-002", input="x").data[0].embedding) == 1536
    assert len(client.embeddings.create(model="my-model", input="x").data[0].embedding) == 1536
    with pytest.raises(openai.BadRequestError, match="does not support specifying dimensions"):
        client.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=256)
    with pytest.raises(openai.BadRequestError, match="Must be between 1 and 1536"):
        client.embeddings.create(model=MODEL, input="x", dimensions=2000)


def test_order_index_and_counters(client, openai_server):
    texts = [f"chunk number {i} of file_{i % 7}" for i in range(50)]
    r = client.embeddings.create(model=MODEL, input=texts, encoding_format="float", dimensions=32)
    assert [d.index for d in r.data] == list(range(50))
    for d, t in zip(r.data, texts):
        np.testing.assert_allclose(d.embedding, fake_embedding(t, 32), rtol=1e-6)
    s = openai_server
    assert (s.requests_total, s.requests_ok, s.inputs_embedded) == (1, 1, 50)
    assert s.embedded_texts == texts and set(s.embedded_counts.values()) == {1}
    assert s.status_counts == {200: 1} and s.api_keys == {"test-key"} and s.in_flight == 0
    s.reset_counters()
    assert (s.requests_total, s.inputs_embedded, s.embedded_texts, s.api_keys) == (0, 0, [], set())


def test_token_id_inputs(openai_server):
    one = post(openai_server, {"model": MODEL, "input": [1, 2, 3]}).json()
    many = post(openai_server, {"model": MODEL, "input": [[1, 2], [3, 4, 5]]}).json()
    assert len(one["data"]) == 1 and one["usage"]["prompt_tokens"] == 3
    assert len(many["data"]) == 2 and many["usage"]["total_tokens"] == 5
    assert post(openai_server, {"model": MODEL, "input": [1, "a"]}).status_code == 400
    assert post(openai_server, {"model": MODEL, "input": ""}).status_code == 400


def test_models_and_health(client, openai_server):
    assert "text-embedding-3-small" in [m.id for m in client.models.list()]
    assert httpx.get(f"{openai_server.url}/health").json() == {"status": "ok"}
    assert openai_server.requests_total == 0  # counters track the embeddings endpoint only
    assert openai_server.path_counts == {"GET /v1/models": 1, "GET /health": 1}


# -- auth and limits -----------------------------------------------------------


def test_missing_or_wrong_key_is_401(openai_server):
    for auth in (None, "Bearer", "Basic dXNlcjpwYXNz"):
        r = post(openai_server, {"model": MODEL, "input": "x"}, auth=auth)
        assert r.status_code == 401
        assert set(r.json()["error"]) >= {"message", "type", "code"}
    assert openai_server.api_keys == set() and openai_server.status_counts == {401: 3}

    openai_server.valid_api_keys = {"right-key"}
    with openai.OpenAI(api_key="wrong-key", base_url=openai_server.base_url, max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            c.embeddings.create(model=MODEL, input="x")
    assert openai_server.api_keys == {"wrong-key"}


def test_limits_return_openai_style_400(client, openai_server):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=MODEL, input="x" * 40_000)  # 10000 approx tokens > 8191
    assert e.value.code == "context_length_exceeded"
    assert "maximum context length is 8191 tokens, however you requested 10000 tokens" in e.value.message

    openai_server.max_tokens_per_request = 100
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=MODEL, input=["y" * 200] * 3)  # 3 x 50 tokens
    assert e.value.code == "max_tokens_per_request"
    assert "Requested 150 tokens, max 100 tokens per request" in e.value.message

    openai_server.max_inputs_per_request = 4
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=MODEL, input=["z"] * 5)
    assert e.value.code == "array_above_max_length"
    assert openai_server.status_counts == {400: 3} and openai_server.inputs_embedded == 0


# -- faults --------------------------------------------------------------------


def test_429_with_retry_after_and_ratelimit_headers(client, openai_server):
    openai_server.add_faults(Fault.status(429, retry_after=0.2, headers={"x-ratelimit-reset-tokens": "20ms"}))
    with pytest.raises(openai.RateLimitError) as e:
        client.embeddings.create(model=MODEL, input="x")
    assert e.value.status_code == 429 and e.value.code == "rate_limit_exceeded"
    assert e.value.response.headers["retry-after"] == "0.2"
    assert e.value.response.headers["x-ratelimit-reset-tokens"] == "20ms"
    client.embeddings.create(model=MODEL, input="x")  # the queue is consumed: next one succeeds
    assert openai_server.status_counts == {429: 1, 200: 1} and openai_server.embedded_counts["x"] == 1


def test_client_retries_through_queued_faults(openai_server):
    openai_server.add_faults(Fault.status(429, retry_after=0.05), Fault.status(500, retry_after=0.05),
                             Fault.status(503, retry_after=0.05))
    with openai.OpenAI(api_key="k", base_url=openai_server.base_url, max_retries=3) as c:
        c.embeddings.create(model=MODEL, input="x", timeout=5)
    assert openai_server.status_counts == {429: 1, 500: 1, 503: 1, 200: 1}
    assert (openai_server.requests_total, openai_server.requests_ok, openai_server.faults_pending) == (4, 1, 0)


def test_wrong_count_and_wrong_dims(openai_server):
    openai_server.add_faults(Fault.wrong_count(), Fault.wrong_dims())
    body = {"model": MODEL, "input": ["a", "b", "c"], "dimensions": 8}
    assert [d["index"] for d in post(openai_server, body).json()["data"]] == [0, 1]
    assert {len(d["embedding"]) for d in post(openai_server, body).json()["data"]} == {7}
    assert openai_server.status_counts == {200: 2}
    assert openai_server.requests_ok == 0 and openai_server.inputs_embedded == 0  # not correct answers


def test_malformed_json(client, openai_server):
    openai_server.add_faults(Fault.malformed(), Fault.malformed())
    r = post(openai_server, {"model": MODEL, "input": "a"})
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        r.json()
    with pytest.raises(ValueError):  # the openai client surfaces the JSONDecodeError itself
        client.embeddings.create(model=MODEL, input="a")


@pytest.mark.parametrize("fault", [Fault.drop(), Fault.drop_mid_response()], ids=["drop", "mid"])
def test_dropped_connections(client, openai_server, fault):
    openai_server.add_faults(fault)
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model=MODEL, input="a")
    assert openai_server.dropped == 1 and openai_server.status_counts == {}
    client.embeddings.create(model=MODEL, input="a")  # the server itself is fine
    assert openai_server.requests_ok == 1 and openai_server.in_flight == 0


def test_timeout_fault(client, openai_server):
    openai_server.add_faults(Fault.timeout(1.0))
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.embeddings.create(model=MODEL, input="a", timeout=0.3)
    assert time.monotonic() - t0 < 0.9


def test_always_fail_every_and_clear(client, openai_server):
    openai_server.always(Fault.status(429))
    for _ in range(3):
        with pytest.raises(openai.RateLimitError):
            client.embeddings.create(model=MODEL, input="a")
    openai_server.clear_faults()
    client.embeddings.create(model=MODEL, input="a")

    openai_server.reset_counters()
    openai_server.fail_every(3, Fault.status(500))
    outcomes = []
    for _ in range(6):
        try:
            client.embeddings.create(model=MODEL, input="a")
            outcomes.append(200)
        except openai.InternalServerError:
            outcomes.append(500)
    assert outcomes == [200, 200, 500, 200, 200, 500]


# -- latency and concurrency ---------------------------------------------------


def test_latency_can_change_while_running(client, openai_server):
    openai_server.latency = 0.3
    t0 = time.monotonic()
    client.embeddings.create(model=MODEL, input="a")
    assert time.monotonic() - t0 >= 0.3
    openai_server.latency = 0
    t0 = time.monotonic()
    client.embeddings.create(model=MODEL, input="a")
    assert time.monotonic() - t0 < 0.3


def test_max_in_flight_with_unbounded_concurrency(openai_server):
    openai_server.latency = 0.2

    async def main():
        async with async_client(openai_server) as c:
            await asyncio.gather(*(c.embeddings.create(model=MODEL, input=f"t{i}") for i in range(8)))

    asyncio.run(main())
    assert openai_server.max_in_flight == 8 and openai_server.in_flight == 0
    assert openai_server.requests_ok == 8


def test_max_in_flight_with_semaphore(openai_server):
    openai_server.latency = 0.05

    async def main():
        sem = asyncio.Semaphore(3)
        async with async_client(openai_server) as c:
            async def one(i):
                async with sem:
                    await c.embeddings.create(model=MODEL, input=f"t{i}")
            await asyncio.gather(*(one(i) for i in range(30)))

    asyncio.run(main())
    assert openai_server.max_in_flight == 3 and openai_server.requests_ok == 30


# -- process and hygiene -------------------------------------------------------


def test_quiet_and_restartable(capfd):
    server = FakeOpenAIServer()
    with server:
        post(server, {"model": MODEL, "input": "a"})
        post(server, {"model": MODEL, "input": "a"}, auth=None)
        server.add_faults(Fault.drop())
        with pytest.raises(httpx.TransportError):
            post(server, {"model": MODEL, "input": "a"})
    assert capfd.readouterr().err == ""
    with pytest.raises(httpx.TransportError):
        post(server, {"model": MODEL, "input": "a"})
    with server:  # start() again binds the same port
        assert post(server, {"model": MODEL, "input": "a"}).status_code == 200


def test_standalone_process():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "repo_index_tests.fakes.openai_server", "--port", "0",
                             "--latency", "0.01"], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        with openai.OpenAI(api_key="k", base_url=base_url, max_retries=0) as c:
            assert len(c.embeddings.create(model=MODEL, input="a").data) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
