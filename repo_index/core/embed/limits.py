"""How many requests may be in flight (AIMD, as TCP) and how fast they may be sent
(requests- and tokens-per-minute budgets shared by the whole process, or by every worker
through the shared store: `shared_budget`)."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Protocol

from ..settings import get_settings


class AdaptiveLimit:
    """At most `limit` requests in flight, and `limit` never above `maximum`.

    Slots are granted first come, first served (a deque of futures: O(1) per request
    however many batches wait). The limit is judged once per round of `limit` answers: two
    rounds in a row with more 429s than successes halve it (one such round happens by
    chance when a server refuses requests at random: with 30% refused, one round in 20),
    any other round below `maximum` adds one. Answers to requests sent before the last
    decrease are not counted: they report on the old limit, and counting them would halve
    it again for the same congestion.
    """

    def __init__(self, maximum: int):
        self.maximum = self.limit = self.lowest = maximum
        self.in_flight = 0
        self.peak = 0
        self.epoch = 0  # bumped at every decrease
        self._ok = 0
        self._refused = 0
        self._refused_rounds = 0  # consecutive rounds with more 429s than successes
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch to pass to `record` with the answer."""
        if self.in_flight < self.limit and not self._waiters:
            self._take()
            return self.epoch
        granted = asyncio.get_running_loop().create_future()
        self._waiters.append(granted)
        self._wake()  # the queue may hold only waiters that were cancelled meanwhile
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():  # granted as we were cancelled: give it back
                self.release()
            raise
        return self.epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def record(self, rate_limited: bool, epoch: int) -> None:
        """Count one answer; at the end of a round, halve or grow the limit."""
        if epoch != self.epoch:
            return
        if rate_limited:
            self._refused += 1
        else:
            self._ok += 1
        if self._ok + self._refused < self.limit:
            return
        refused_round = self._refused > self._ok
        self._ok = self._refused = 0
        self._refused_rounds = self._refused_rounds + 1 if refused_round else 0
        if self._refused_rounds >= 2:
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self.epoch += 1
            self._refused_rounds = 0
        elif not refused_round and self.limit < self.maximum:
            self.limit += 1
            self._wake()

    def _take(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)


class RateLimiter:
    """Requests- and tokens-per-minute budgets, as a generic cell rate algorithm.

    `reserve(tokens)` books the request's place in both budgets and returns how long to
    wait before sending; bookings are first come, first served. Up to `burst_s` seconds of
    budget may be spent at once. Time-based and thread-safe, so one instance can serve
    every event loop and thread of a process.
    """

    def __init__(self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 burst_s: float = 1.0):
        self.rates = (requests_per_minute / 60 if requests_per_minute else None,
                      tokens_per_minute / 60 if tokens_per_minute else None)
        self.burst_s = burst_s
        self._tat = [0.0, 0.0]  # theoretical arrival time of the next unit, per budget
        self._lock = threading.Lock()

    def reserve(self, tokens: int) -> float:
        with self._lock:
            now = time.monotonic()
            start = now
            for rate, tat in zip(self.rates, self._tat):
                if rate:
                    start = max(start, tat - self.burst_s)
            for i, (rate, cost) in enumerate(zip(self.rates, (1, tokens))):
                if rate:
                    self._tat[i] = max(self._tat[i], start) + cost / rate
            return start - now


class Budget(Protocol):
    def reserve(self, tokens: int) -> float:
        """Book a request of `tokens` tokens; the seconds to wait before sending it."""


_shared_limiters: dict[tuple, Budget] = {}
_shared_lock = threading.Lock()


def shared_rate_limiter(scope: str, requests_per_minute: float | None,
                        tokens_per_minute: float | None) -> Budget | None:
    """The one limiter for `scope` (a provider account and model) and budgets: with
    REPO_INDEX_CACHE_URL set, kept in that database for every worker of the cluster (the
    store unreachable fails here: see `shared_budget`), else the process's own."""
    if not requests_per_minute and not tokens_per_minute:
        return None
    url = get_settings().shared_store_url()
    with _shared_lock:
        key = (url, scope, requests_per_minute, tokens_per_minute)
        limiter = _shared_limiters.get(key)
        if limiter is None:
            if url:
                from .shared_budget import SharedRateLimiter, store_for  # psycopg2 only on a cluster

                limiter = SharedRateLimiter(store_for(url), scope, requests_per_minute, tokens_per_minute)
            else:
                limiter = RateLimiter(requests_per_minute, tokens_per_minute)
            _shared_limiters[key] = limiter
        return limiter
