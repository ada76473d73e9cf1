"""The requests/tokens-per-minute budget shared by every worker through PostgreSQL
(REPO_INDEX_CACHE_URL): real worker processes, the real embedding loop, a real server."""

import os
import subprocess
import sys
import time

import psycopg2
import pytest

from repo_index.core.embed.loop import embed_chunks
from repo_index.core.embed.results import EmbeddingFailed
from repo_index.core.embed.shared_budget import TABLE, SharedBudgetStore, SharedRateLimiter
from repo_index_tests.services import free_port, postgres_server
from repo_index_tests.core.test_batching import chunk_table, embedder_for

RPM = 600  # 10 requests per second, and the limiter's 1-second burst: 10 more at once
BURST_S = 1.0
WINDOW_S = 2.0
PER_WORKER = 30


def most_in_any_window(times: list[float], window: float) -> int:
    """The most arrivals in any `window` seconds (sliding, ending at an arrival)."""
    times, first, most = sorted(times), 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def budget_in_window(window: float) -> float:
    """What the budget lets through in `window` seconds: the first request, the burst, the rate."""
    return 1 + RPM / 60 * (BURST_S + window)


def run_two_workers(base_url: str, cache_url: str | None) -> tuple[list[str], float]:
    """Each worker's count of requests sent, and time.monotonic() when both were told to start."""
    env = {k: v for k, v in os.environ.items() if k != "REPO_INDEX_CACHE_URL"}
    if cache_url:
        env["REPO_INDEX_CACHE_URL"] = cache_url
    workers = [subprocess.Popen([sys.executable, "-m", "repo_index_tests.core.budget_worker", base_url, name,
                                 str(PER_WORKER), str(RPM)], env=env, text=True, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for name in ("first", "second")]
    try:
        for w in workers:  # both imported before either sends: they compete for the budget
            assert w.stdout.readline().strip() == "ready", w.communicate(timeout=30)[1]
        go = time.monotonic()
        for w in workers:
            w.stdin.write("go\n")
            w.stdin.flush()
        outputs = [w.communicate(timeout=60) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, err
    return [out.strip() for out, _ in outputs], go


def test_two_workers_on_the_shared_store_stay_within_one_budget(openai_server):
    with postgres_server() as port:
        sent, go = run_two_workers(openai_server.base_url, f"postgresql://dagster@127.0.0.1:{port}/dagster")
    assert sent == [str(PER_WORKER), str(PER_WORKER)]
    arrivals = [t for t in openai_server.arrival_times if t >= go]  # not the warm-ups
    assert len(arrivals) == 2 * PER_WORKER
    # One budget for both: at most 31 requests in any 2 s (+2 for a request the event loop
    # sent a few ms late, into the next window). Two budgets of their own send about 62.
    assert most_in_any_window(arrivals, WINDOW_S) <= budget_in_window(WINDOW_S) + 2


def test_two_workers_without_the_shared_store_each_spend_the_whole_budget(openai_server):
    """The control of the test above: its measure sees two per-process budgets' excess."""
    _, go = run_two_workers(openai_server.base_url, None)
    arrivals = [t for t in openai_server.arrival_times if t >= go]
    assert len(arrivals) == 2 * PER_WORKER
    assert most_in_any_window(arrivals, WINDOW_S) > 1.5 * budget_in_window(WINDOW_S)


def test_back_to_back_reservations_follow_the_rate_whichever_connection_makes_them():
    with postgres_server() as port:
        url = f"postgresql://dagster@127.0.0.1:{port}/dagster"
        # Two connections, as two workers: one queue.
        limiters = [SharedRateLimiter(SharedBudgetStore(url), "openai:http://h/v1:m", requests_per_minute=RPM)
                    for _ in range(2)]
        started = time.monotonic()
        waits, expected = [], []
        for i in range(30):
            elapsed = time.monotonic() - started
            waits.append(limiters[i % 2].reserve(1))
            # The first request and a second's burst (10) at once, then one every 0.1 s, on the
            # database's clock (which moved on by `elapsed` meanwhile).
            expected.append(max(0.0, (i - 10) / 10 - elapsed))
        assert waits == pytest.approx(expected, abs=0.03)

        tokens = SharedRateLimiter(SharedBudgetStore(url), "openai:http://h/v1:t", tokens_per_minute=60_000)
        assert [round(tokens.reserve(n), 1) for n in (3000, 500, 500)] == [0.0, 2.0, 2.5]
        # Another scope (another model) has a budget of its own.
        assert SharedRateLimiter(limiters[0].store, "openai:http://h/v1:other", RPM).reserve(1) == pytest.approx(0, abs=0.01)


def test_a_dropped_connection_is_reopened_once_and_a_store_gone_fails_with_the_url_masked():
    with postgres_server() as port:
        url = f"postgresql://dagster:budget-pw-123@127.0.0.1:{port}/dagster"
        store = SharedBudgetStore(url)
        limiter = SharedRateLimiter(store, "openai:https://user:proxy-pw-456@proxy/v1:m", requests_per_minute=60)
        assert [round(limiter.reserve(1), 1) for _ in range(3)] == [0.0, 0.0, 1.0]
        with psycopg2.connect(url) as admin, admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'repo_index rate budget'")
            assert cur.rowcount == 1
        # Reopened; the bookings made before the drop still count.
        assert limiter.reserve(1) == pytest.approx(2.0, abs=0.1)
        with psycopg2.connect(url) as admin, admin.cursor() as cur:
            cur.execute(f"SELECT * FROM {TABLE}")
            rows = cur.fetchall()
        assert [r[0] for r in rows] == ["openai:https://user:***@proxy/v1:m"]  # no credential in the table
    with pytest.raises(EmbeddingFailed) as failed:
        limiter.reserve(1)
    message = str(failed.value)
    assert f"postgresql://dagster:***@127.0.0.1:{port}/dagster" in message and "REPO_INDEX_CACHE_URL" in message
    assert "budget-pw-123" not in message


def test_an_unreachable_store_fails_the_run_before_any_request(openai_server, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("REPO_INDEX_CACHE_URL", f"postgresql://dagster:store-pw-789@127.0.0.1:{port}/dagster")
    with pytest.raises(EmbeddingFailed) as failed:
        embed_chunks(chunk_table(5), embedder_for(openai_server), batch_size=1, requests_per_minute=RPM)
    message = str(failed.value)
    assert f"postgresql://dagster:***@127.0.0.1:{port}/dagster" in message and "store-pw-789" not in message
    assert openai_server.requests_total == 0  # never a budget of the process's own instead
