"""The embedding loop against a real OpenAI-compatible HTTP server on loopback."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repo_index.core.embed.limits import AdaptiveLimit, RateLimiter
from repo_index.core.embed.loop import embed_chunks, pack_requests
from repo_index.core.embed.results import EmbeddingFailed
from repo_index.core.chunk.records import embedding_text
from repo_index.core.embed.providers import OpenAIEmbedder
from repo_index.core.embed.cache import VectorCache, text_key
from repo_index_tests.fakes.openai_server import Fault, fake_embedding


def chunk_table(n: int, prefix: str = "item") -> pd.DataFrame:
    rows = [(f"id{i}", f"src/m{i % 7}.py", "python", i, i, f"f{i}", f"f{i}", f"f{i}", 12,
             f"def {prefix}_{i}(): return {i}", f"h{i}")
            for i in range(n)]
    return pd.DataFrame(rows, columns=["chunk_id", "path", "language", "start_line", "end_line", "symbol",
                                       "defines", "header", "n_tokens", "text", "content_hash"])


def texts_of(chunks: pd.DataFrame) -> list[str]:
    return [embedding_text(p, h, t) for p, h, t in zip(chunks["path"], chunks["header"], chunks["text"])]


def embedder_for(server, **kw) -> OpenAIEmbedder:
    return OpenAIEmbedder(api_key="test-key", base_url=server.base_url, timeout_s=kw.pop("timeout_s", 5), **kw)


def expected(chunks: pd.DataFrame, dims: int = 1536) -> np.ndarray:
    return np.vstack([fake_embedding(t, dims) for t in texts_of(chunks)])


class InFlightRecorder:
    """Samples the server's in-flight count every few milliseconds while a run goes on."""

    def __init__(self, server, every_s: float = 0.003):
        self.server, self.every_s, self.samples = server, every_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.server.in_flight))
            time.sleep(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- order, concurrency, packing ----------------------------------------------------------


def test_order_concurrency_and_batching(openai_server):
    openai_server.latency = 0.05
    chunks = chunk_table(230)
    result = embed_chunks(chunks, embedder_for(openai_server), max_concurrent=3, batch_size=10)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (230, 1536)
    np.testing.assert_allclose(result.vectors, expected(chunks), atol=1e-6)
    assert result.chunk_ids == list(chunks["chunk_id"])
    assert result.keys == [text_key(t) for t in texts_of(chunks)]
    assert openai_server.requests_total == 23 and result.stats.requests == 23
    assert openai_server.max_in_flight == 3


def test_requests_are_packed_to_the_token_limit(openai_server):
    chunks = chunk_table(80)
    chunks["n_tokens"] = 8000  # 37 such inputs fit in OpenAI's 300,000 tokens per request
    result = embed_chunks(chunks, embedder_for(openai_server), batch_size=100)
    assert openai_server.requests_total == 3 and result.stats.splits == 0
    np.testing.assert_allclose(result.vectors, expected(chunks), atol=1e-6)


def test_an_input_over_the_per_input_limit_is_refused_before_any_request(openai_server):
    chunks = chunk_table(3)
    chunks.loc[1, "n_tokens"] = 9000
    with pytest.raises(EmbeddingFailed, match=r"id1 \(9000 tokens\).*smaller max_tokens"):
        embed_chunks(chunks, embedder_for(openai_server))
    assert openai_server.requests_total == 0


def test_pack_requests_respects_inputs_and_tokens():
    assert pack_requests([5, 5, 5, 5, 5], max_inputs=2, max_tokens=100) == [[0, 1], [2, 3], [4]]
    assert pack_requests([60, 50, 10, 200], max_inputs=10, max_tokens=100) == [[0], [1, 2], [3]]


def test_request_too_large_is_split(openai_server):
    openai_server.max_tokens_per_request = 60  # each text is ~10-15 approximate tokens
    chunks = chunk_table(16)
    result = embed_chunks(chunks, embedder_for(openai_server), batch_size=16)
    np.testing.assert_allclose(result.vectors, expected(chunks), atol=1e-6)
    assert result.stats.splits >= 1


# -- faults ---------------------------------------------------------------------------------


def test_transient_faults_end_with_every_vector_correct(openai_server):
    openai_server.add_faults(Fault.status(429, retry_after=0.1), Fault.status(500), Fault.status(503),
                             Fault.drop(), Fault.drop_mid_response(), Fault.timeout(3.0), Fault.malformed(),
                             Fault.wrong_count())
    chunks = chunk_table(40)
    result = embed_chunks(chunks, embedder_for(openai_server, timeout_s=1.0), max_concurrent=2, batch_size=10)
    np.testing.assert_allclose(result.vectors, expected(chunks), atol=1e-6)
    assert result.stats.retries == 8
    assert set(result.stats.errors) == {"rate_limit", "server", "network", "response"}
    assert set(openai_server.embedded_counts) == set(texts_of(chunks))


def test_persistent_wrong_count_fails_loudly(openai_server):
    openai_server.always(Fault.wrong_count())
    with pytest.raises(EmbeddingFailed, match="expected 5 vectors, got 4"):
        embed_chunks(chunk_table(5), embedder_for(openai_server), max_retries=2)
    assert openai_server.requests_total == 3


def test_wrong_dimensions_fail_at_once(openai_server):
    openai_server.always(Fault.wrong_dims())
    with pytest.raises(EmbeddingFailed, match="expected vectors of 1536 dimensions, got 1535"):
        embed_chunks(chunk_table(5), embedder_for(openai_server))
    assert openai_server.requests_total == 1  # a configuration problem: retrying cannot help


def test_retry_after_is_honoured(openai_server):
    openai_server.add_faults(Fault.status(429, retry_after=0.6))
    started = time.perf_counter()
    result = embed_chunks(chunk_table(3), embedder_for(openai_server))
    assert time.perf_counter() - started >= 0.6
    assert result.stats.retries == 1 and result.stats.rate_limited == 1


def test_ratelimit_reset_header_of_the_exhausted_limit_is_honoured(openai_server):
    # The tokens window resets in 0.5 s and is exhausted; the requests window is not.
    openai_server.add_faults(Fault.status(429, headers={
        "x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "20ms",
        "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "500ms"}))
    started = time.perf_counter()
    embed_chunks(chunk_table(3), embedder_for(openai_server))
    assert 0.5 <= time.perf_counter() - started < 3.0


def test_sustained_429_backs_concurrency_off_then_it_recovers(openai_server):
    openai_server.latency = 0.03
    # 16 refusals in a row (with a short Retry-After), then a healthy server.
    openai_server.add_faults(*[Fault.status(429, retry_after=0.02)] * 16)
    chunks = chunk_table(120)
    with InFlightRecorder(openai_server) as rec:
        result = embed_chunks(chunks, embedder_for(openai_server), max_concurrent=4, batch_size=1)
    np.testing.assert_allclose(result.vectors, expected(chunks), atol=1e-6)
    assert result.stats.rate_limited == 16
    assert result.stats.lowest_concurrency == 1
    assert openai_server.max_in_flight <= 4
    # Back at full concurrency after the storm: the last third of the run has 4 in flight.
    start, end = rec.samples[0][0], rec.samples[-1][0]
    late = [n for t, n in rec.samples if t > start + 2 * (end - start) / 3]
    assert max(late) == 4


def test_sporadic_429s_do_not_lower_concurrency(openai_server):
    openai_server.latency = 0.02
    openai_server.fail_every(4, Fault.status(429, retry_after=0.01))  # 25% refused, spread out
    result = embed_chunks(chunk_table(200), embedder_for(openai_server), max_concurrent=4, batch_size=2)
    assert result.stats.rate_limited > 10
    assert result.stats.lowest_concurrency == 4


def test_adaptive_limit_halves_after_two_refused_rounds_and_grows_back():
    async def round_of(limit: AdaptiveLimit, refused: bool, n: int | None = None) -> int:
        epochs = [await limit.acquire() for _ in range(n or limit.limit)]
        for e in epochs:
            limit.release()
            limit.record(refused, e)
        return limit.limit

    async def scenario() -> list[int]:
        limit = AdaptiveLimit(8)
        seen = [await round_of(limit, True)]  # one refused round may be chance: no change
        seen.append(await round_of(limit, True))  # the second in a row halves, once
        for _ in range(4):  # rounds of successes add one each
            seen.append(await round_of(limit, False))
        return seen

    assert asyncio.run(scenario()) == [8, 4, 5, 6, 7, 8]


def test_adaptive_limit_ignores_answers_to_requests_sent_before_a_decrease():
    async def scenario() -> int:
        limit = AdaptiveLimit(8)
        epochs = []
        for _ in range(24):  # 24 requests sent at the old limit
            epochs.append(await limit.acquire())
            limit.release()
        for e in epochs:  # all refused: two rounds halve to 4; the last 8 report the same congestion
            limit.record(True, e)
        return limit.limit

    assert asyncio.run(scenario()) == 4  # not 2


# -- rate limits ----------------------------------------------------------------------------


def test_rate_limiter_spaces_requests_and_tokens():
    clock = RateLimiter(requests_per_minute=120, burst_s=1.0)  # 2 per second, a 1-second burst
    waits = [clock.reserve(1) for _ in range(6)]
    # The first request and one second's worth go at once, then one every half second.
    assert waits == pytest.approx([0, 0, 0, 0.5, 1.0, 1.5], abs=0.02)
    tokens = RateLimiter(tokens_per_minute=60_000, burst_s=1.0)  # 1,000 tokens per second
    assert [round(tokens.reserve(n), 1) for n in (3000, 500, 500)] == [0.0, 2.0, 2.5]


def test_requests_per_minute_is_shared_by_every_call_of_the_process(openai_server):
    chunks = chunk_table(20)
    # 60 per minute: one request per second, one second of burst.
    embed_chunks(chunks, embedder_for(openai_server), batch_size=10, requests_per_minute=60)
    started = time.perf_counter()
    embed_chunks(chunk_table(20, "other"), embedder_for(openai_server), batch_size=10, requests_per_minute=60)
    # The second call's two requests queue behind the first call's: >= 1.9 s, not 1 s.
    assert time.perf_counter() - started >= 1.9
    assert openai_server.requests_total == 4


# -- never the same text twice --------------------------------------------------------------


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
        np.testing.assert_allclose(third.vectors, expected(edited), atol=1e-6)


def test_without_keep_vectors_every_vector_is_left_in_the_cache(openai_server, tmp_path: Path):
    chunks = chunk_table(60)
    chunks.loc[59, ["path", "header", "text"]] = chunks.loc[0, ["path", "header", "text"]]  # a repeated text
    with VectorCache(tmp_path / "cache.sqlite") as cache:
        embed_chunks(chunks.iloc[:20], embedder_for(openai_server), cache, owner="svc")
        openai_server.reset_counters()

        result = embed_chunks(chunks, embedder_for(openai_server), cache, owner="svc", batch_size=10,
                              keep_vectors=False)
        assert result.vectors is None and result.has_vectors
        s = result.stats
        assert (s.unique_texts, s.reused, s.to_embed, s.embedded) == (59, 20, 39, 39)
        assert openai_server.inputs_embedded == 39
        np.testing.assert_allclose(cache.matrix(result.model, 1536, result.keys), expected(chunks), atol=1e-6)
        assert cache.owners() == {"svc": 59}

        openai_server.reset_counters()
        again = embed_chunks(chunks, embedder_for(openai_server), cache, owner="svc", keep_vectors=False)
        assert openai_server.requests_total == 0 and again.stats.reused == 59 and again.vectors is None

        estimate = embed_chunks(chunk_table(61), embedder_for(openai_server), cache, owner="svc",
                                estimate_only=True, keep_vectors=False)
        assert estimate.vectors.shape == (0, 1536) and not estimate.has_vectors
        assert (estimate.stats.reused, estimate.stats.to_embed) == (59, 2)  # row 59's text and row 60
    with pytest.raises(ValueError, match="needs a cache and an owner"):
        embed_chunks(chunks, embedder_for(openai_server), keep_vectors=False)


def test_identical_texts_are_embedded_once(openai_server):
    chunks = chunk_table(10)
    chunks["text"], chunks["path"], chunks["header"] = "same", "a.py", ""
    result = embed_chunks(chunks, embedder_for(openai_server))
    assert openai_server.inputs_embedded == 1 and result.stats.unique_texts == 1
    assert (result.vectors == result.vectors[0]).all()


def test_a_failed_run_keeps_what_it_received(openai_server, tmp_path: Path):
    chunks = chunk_table(40)
    openai_server.fail_every(3, Fault.status(500))  # the 3rd request fails for good (no retries)
    with VectorCache(tmp_path / "cache.sqlite") as cache:
        with pytest.raises(EmbeddingFailed):
            embed_chunks(chunks, embedder_for(openai_server), cache, owner="svc", max_concurrent=1,
                         batch_size=10, max_retries=0)
        assert cache.count() == 20
        openai_server.clear_faults()
        openai_server.reset_counters()
        embed_chunks(chunks, embedder_for(openai_server), cache, owner="svc", batch_size=10)
        assert set(openai_server.embedded_texts) == set(texts_of(chunks)[20:])


KILLED_RUN = """
import sys
from pathlib import Path
from repo_index.core.embed.loop import embed_chunks
from repo_index.core.embed.providers import OpenAIEmbedder
from repo_index.core.embed.cache import VectorCache
from repo_index_tests.core.test_batching import chunk_table
with VectorCache(Path(sys.argv[2])) as cache:
    embed_chunks(chunk_table(200), OpenAIEmbedder(api_key="k", base_url=sys.argv[1]), cache, owner="svc",
                 max_concurrent=2, batch_size=10)
"""


def test_a_killed_run_keeps_what_it_received_and_the_rerun_pays_only_the_rest(openai_server, tmp_path: Path):
    openai_server.latency = 0.1  # 20 requests, 2 at a time: ~1 s in all
    cache_path = tmp_path / "cache.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, openai_server.base_url, str(cache_path)])
    try:
        deadline = time.monotonic() + 60
        while openai_server.requests_ok < 8 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    while openai_server.in_flight:  # the dead client's last requests still get answered
        time.sleep(0.01)
    answered = set(openai_server.embedded_texts)
    chunks = chunk_table(200)
    all_texts = set(texts_of(chunks))
    with VectorCache(cache_path) as cache:
        kept = set(cache.get_many("text-embedding-3-small", 1536, [text_key(t) for t in all_texts]))
        assert len(kept) >= 40  # most of the 8+ answers of 10 reached the disk before the kill
        # Lost at most what was in flight (2 x 10) and the answers between the socket and the
        # disk: one commit per answer, which on a loaded machine can trail by two.
        assert len(answered) - len(kept) <= 40

        openai_server.reset_counters()
        result = embed_chunks(chunks, embedder_for(openai_server), cache, owner="svc", max_concurrent=2,
                              batch_size=10)
    resent = openai_server.embedded_texts
    assert len(resent) == len(set(resent)) == 200 - len(kept)
    assert not {text_key(t) for t in resent} & kept
    assert result.stats.reused == len(kept)
    np.testing.assert_allclose(result.vectors, expected(chunks), atol=1e-6)


def test_estimate_only_sends_nothing(openai_server, tmp_path: Path):
    chunks = chunk_table(30)
    with VectorCache(tmp_path / "cache.sqlite") as cache:
        embed_chunks(chunks.iloc[:10], embedder_for(openai_server), cache, owner="svc")
        openai_server.reset_counters()
        result = embed_chunks(chunks, embedder_for(openai_server), cache, estimate_only=True, owner="svc")
        assert cache.owners() == {"svc": 10}  # an estimate changes no reference
    assert openai_server.requests_total == 0
    assert result.stats.reused == 10 and result.stats.to_embed == 20
    assert result.stats.tokens == 20 * 12 and result.stats.estimated_usd == pytest.approx(240 / 1e6 * 0.02)
    assert result.vectors.shape == (0, 1536)


def test_a_fatal_error_sends_no_queued_request(openai_server):
    openai_server.latency = 0.1
    openai_server.always(Fault.status(403))  # not retryable
    with pytest.raises(EmbeddingFailed, match="403|PermissionDenied"):
        embed_chunks(chunk_table(100), embedder_for(openai_server), max_concurrent=3, batch_size=5)
    # Only the requests already in flight when the first one failed were sent, not the 20 batches.
    assert openai_server.requests_total <= 3


def test_use_async_false_sends_one_request_at_a_time_and_says_so(openai_server, caplog):
    openai_server.latency = 0.02
    chunks = chunk_table(60)
    with caplog.at_level("INFO", logger="repo_index.core.embed.loop"):
        one_by_one = embed_chunks(chunks, embedder_for(openai_server), batch_size=10, max_concurrent=8,
                                  use_async=False)
    assert one_by_one.stats.peak_in_flight == 1 and one_by_one.stats.requests == 6
    assert "6 requests, at most 1 in flight" in caplog.text
    np.testing.assert_allclose(one_by_one.vectors, expected(chunks), atol=1e-6)
    concurrent = embed_chunks(chunks, embedder_for(openai_server), batch_size=10, max_concurrent=8)
    assert concurrent.stats.peak_in_flight > 1
    np.testing.assert_array_equal(concurrent.vectors, one_by_one.vectors)


def test_an_api_key_echoed_by_the_server_is_masked_and_not_chained(openai_server):
    key = "sk-proj-echoed0123456789abcdef"
    openai_server.always(Fault.status(401, message=f"Invalid credentials: Bearer {key}"))
    embedder = OpenAIEmbedder(api_key=key, base_url=openai_server.base_url, timeout_s=5)
    with pytest.raises(EmbeddingFailed) as caught:
        embed_chunks(chunk_table(3), embedder, max_retries=0)
    assert key not in str(caught.value) and "[masked]" in str(caught.value)
    assert "401" in str(caught.value) or "AuthenticationError" in str(caught.value)
    # Nothing chained carries the server's answer into logs or run storage.
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# -- the whole-request deadline --------------------------------------------------------------


@pytest.mark.timeout(60)  # on a client that bounds each read only, the drip takes hours: fail, do not hang
def test_a_response_dripping_in_is_abandoned_at_the_request_deadline_and_retried(openai_server):
    openai_server.always(Fault.drip(0.2))  # every byte arrives within any read timeout; the body never ends
    started = time.monotonic()
    with pytest.raises(EmbeddingFailed) as caught:
        embed_chunks(chunk_table(3), embedder_for(openai_server, timeout_s=1.0), max_retries=1)
    elapsed = time.monotonic() - started
    assert "1 retries" in str(caught.value) and "1 s deadline" in str(caught.value), str(caught.value)
    assert openai_server.requests_total == 2, openai_server.path_counts  # the first request and its retry, each cut at 1 s
    assert elapsed < 10, elapsed


@pytest.mark.timeout(60)
def test_a_dripping_response_is_retried_and_the_retry_answers(openai_server):
    openai_server.add_faults(Fault.drip(0.2))
    chunks = chunk_table(5)
    result = embed_chunks(chunks, embedder_for(openai_server, timeout_s=1.0), batch_size=5)
    np.testing.assert_allclose(result.vectors, expected(chunks), atol=1e-6)
    assert result.stats.retries == 1 and result.stats.errors == {"network": 1}


@pytest.mark.timeout(60)
def test_a_query_answered_by_a_drip_ends_at_the_deadline(openai_server):
    from repo_index.core.search.query import embed_query

    openai_server.always(Fault.drip(0.2))
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="1 s deadline"):
        embed_query(embedder_for(openai_server, timeout_s=1.0), "parse the config file")
    assert time.monotonic() - started < 10


# -- inputs the server refuses -----------------------------------------------------------------


def test_one_refused_input_is_isolated_skipped_counted_and_asked_again_next_run(openai_server, tmp_path: Path):
    chunks = chunk_table(40)
    openai_server.refused_substrings = {"item_17()"}  # chunk id17: src/m3.py, line 17
    with VectorCache(tmp_path / "cache.sqlite") as cache:
        result = embed_chunks(chunks, embedder_for(openai_server), cache, batch_size=10, owner="repo",
                              max_refused_share=0.05)  # 2 of 40 may be refused
        [refusal] = result.refused
        assert (refusal.chunk_id, refusal.path, refusal.start_line, refusal.end_line) == ("id17", "src/m3.py", 17, 17)
        assert "maximum context length" in refusal.reason and result.stats.refused == 1
        others = [i for i in range(40) if i != 17]
        assert result.embedded_rows() == others
        np.testing.assert_allclose(result.vectors[others], expected(chunks)[others], atol=1e-6)
        assert not result.vectors[17].any()
        assert result.stats.embedded == 39 and result.stats.splits >= 3  # halved down to the one input
        # No vector stands for the refusal: the next run asks for that text (and only that one) again.
        keys = [text_key(t) for t in texts_of(chunks)]
        assert set(cache.present("text-embedding-3-small", 1536, keys)) == set(keys) - {keys[17]}
        openai_server.reset_counters()
        openai_server.refused_substrings = set()  # e.g. the server now reads longer inputs
        again = embed_chunks(chunks, embedder_for(openai_server), cache, batch_size=10, owner="repo")
    assert openai_server.embedded_texts == [texts_of(chunks)[17]]
    assert again.refused == [] and again.stats.reused == 39
    np.testing.assert_allclose(again.vectors, expected(chunks), atol=1e-6)


def test_an_input_refused_as_invalid_is_skipped_too_and_the_reason_masked(openai_server):
    key = "sk-proj-echoed0123456789abcdef"
    openai_server.refused_substrings = {"item_3()"}
    openai_server.refusal_message = f"'$.input' is invalid (key {key})"
    result = embed_chunks(chunk_table(8), OpenAIEmbedder(api_key=key, base_url=openai_server.base_url, timeout_s=5),
                          batch_size=8, max_refused_share=0.2)
    [refusal] = result.refused
    assert refusal.chunk_id == "id3" and key not in refusal.reason and "[masked]" in refusal.reason
    assert result.stats.errors.get("invalid_input", 0) >= 4  # 8 -> 4 -> 2 -> 1, each refused


def test_more_refused_than_the_share_fails_saying_how_many(openai_server):
    openai_server.refused_substrings = {"item_1", "item_2"}  # item_1, item_10..19, item_2, item_20..29: 22 of 100
    with pytest.raises(EmbeddingFailed) as caught:
        embed_chunks(chunk_table(100), embedder_for(openai_server), batch_size=10, max_concurrent=1,
                     max_refused_share=0.05)
    text = str(caught.value)
    assert "refused 6 of 100 chunks, more than REPO_INDEX_MAX_REFUSED_SHARE=0.05 allows (5)" in text, text
    assert "src/m" in text and "maximum context length" in text


def test_a_400_about_the_request_is_not_split_per_input(openai_server):
    openai_server.always(Fault.status(400))  # "Invalid request.": nothing says which input
    with pytest.raises(EmbeddingFailed, match="400"):
        embed_chunks(chunk_table(20), embedder_for(openai_server), batch_size=20, max_concurrent=1)
    assert openai_server.requests_total == 1
