"""The requests- and tokens-per-minute budget shared by every worker of a cluster, in the
PostgreSQL database they all reach (REPO_INDEX_CACHE_URL).

The algorithm is `limits.RateLimiter`'s (a generic cell rate algorithm with a burst), but
its state, the theoretical arrival time of each budget, lives in one row per scope (a
provider's base URL and model: the account's limit) and is moved by one statement per
reservation, on the database's clock: workers on several machines book places in one
queue whatever their own clocks say. There is no fallback to a per-process budget when
the database is unreachable: N workers on their own would send N times the account's limit.
"""

from __future__ import annotations

import os
import re
import threading

from ..shared_store import masked_error, masked_url
from .results import EmbeddingFailed

TABLE = "repo_index_rate_budgets"

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    scope text PRIMARY KEY,
    requests_tat double precision,       -- seconds since the epoch, on the database's clock
    tokens_tat double precision,
    last_start double precision NOT NULL, -- when the last reservation may be sent
    last_now double precision NOT NULL    -- the clock when it was made
)"""

# A budget this caller does not set has NULL for its cost and burst: greatest() ignores
# NULLs, and coalesce() leaves that budget's arrival time as another worker left it.
_START = "greatest(excluded.last_now, b.requests_tat - %(request_burst)s, b.tokens_tat - %(token_burst)s)"
_RESERVE = f"""
INSERT INTO {TABLE} AS b (scope, requests_tat, tokens_tat, last_start, last_now)
SELECT %(scope)s, t + %(request_s)s, t + %(token_s)s, t, t
FROM (SELECT extract(epoch FROM clock_timestamp())::float8 AS t) AS clock
ON CONFLICT (scope) DO UPDATE SET
    requests_tat = coalesce(greatest(b.requests_tat, {_START}) + %(request_s)s, b.requests_tat),
    tokens_tat = coalesce(greatest(b.tokens_tat, {_START}) + %(token_s)s, b.tokens_tat),
    last_start = {_START},
    last_now = excluded.last_now
RETURNING last_start - last_now"""

# Any number: it only keeps two workers from creating the table at once (CREATE TABLE IF
# NOT EXISTS run concurrently can fail on the catalog's unique index).
_CREATE_LOCK_ID = 0x7265706F5F627564  # "repo_bud"


class SharedBudgetUnavailable(EmbeddingFailed):
    """The shared store holding the budget cannot be reached: nothing is sent."""


_URL_PASSWORD = re.compile(r"(://[^/@:\s]*:)[^/@\s]*@")


def _scope_without_passwords(scope: str) -> str:
    # The scope names a base URL, which may carry credentials: they never reach the table.
    return _URL_PASSWORD.sub(r"\1***@", scope)


class SharedBudgetStore:
    """One connection to the shared store, used by every thread of the process in turn."""

    def __init__(self, url: str):
        self.url = url
        self._lock = threading.Lock()
        self._conn = None
        self._inherited: list = []
        with self._lock:
            self._connect()

    def _fail(self, doing: str, exc: Exception) -> SharedBudgetUnavailable:
        detail = masked_error(exc, self.url)
        return SharedBudgetUnavailable(
            f"the shared requests/tokens-per-minute budget in {masked_url(self.url)} (REPO_INDEX_CACHE_URL) "
            f"could not be {doing} ({detail}). Nothing is sent without it (every worker on a budget of its "
            "own would exceed the account's); start the database, fix the URL, or unset it for a budget "
            "per process")

    def _connect(self) -> None:
        try:
            import psycopg2
        except ImportError as exc:
            raise self._fail("reached", RuntimeError(
                "psycopg2 is not installed (pip install 'repo-index[cluster]')")) from exc
        conn = None
        try:
            conn = psycopg2.connect(self.url, connect_timeout=10, application_name="repo_index rate budget",
                                    options="-c statement_timeout=10000")
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK_ID,))
                cur.execute(_CREATE)
                cur.execute("COMMIT")
        except psycopg2.Error as exc:
            if conn is not None:
                conn.close()
            raise self._fail("reached", exc) from None  # not chained: the driver's error may echo the DSN
        self._conn, self._pid = conn, os.getpid()

    def reserve(self, scope: str, request_s: float | None, token_s: float | None, burst_s: float) -> float:
        """Book a request costing `request_s` seconds of the requests budget and `token_s`
        of the tokens budget (None: not limited by it); returns the seconds to wait."""
        import psycopg2

        params = {"scope": _scope_without_passwords(scope), "request_s": request_s, "token_s": token_s,
                  "request_burst": burst_s if request_s is not None else None,
                  "token_burst": burst_s if token_s is not None else None}
        with self._lock:
            if self._pid != os.getpid():
                # A forked child: the parent's socket is not ours to use, nor to close (freeing
                # the connection would end the parent's session), so it is kept, unused.
                self._inherited.append(self._conn)
                self._connect()
            for attempt in (1, 2):
                try:
                    with self._conn.cursor() as cur:
                        cur.execute(_RESERVE, params)
                        return float(cur.fetchone()[0])
                except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                    # A dropped connection (a restarted server, an idle timeout) is reopened once.
                    # The booking may have been made before the drop: booking again only waits longer.
                    if attempt == 2:
                        raise self._fail("updated", exc) from None
                    try:
                        self._conn.close()
                    except psycopg2.Error:
                        pass
                    self._connect()
                except psycopg2.Error as exc:
                    raise self._fail("updated", exc) from None
        raise AssertionError("unreachable")


class SharedRateLimiter:
    """`limits.RateLimiter`'s interface, its state in the shared store."""

    def __init__(self, store: SharedBudgetStore, scope: str, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None, burst_s: float = 1.0):
        self.store, self.scope, self.burst_s = store, scope, burst_s
        self.rates = (requests_per_minute / 60 if requests_per_minute else None,
                      tokens_per_minute / 60 if tokens_per_minute else None)

    def reserve(self, tokens: int) -> float:
        request_rate, token_rate = self.rates
        return self.store.reserve(self.scope, 1 / request_rate if request_rate else None,
                                  tokens / token_rate if token_rate else None, self.burst_s)


_stores: dict[str, SharedBudgetStore] = {}
_stores_lock = threading.Lock()


def store_for(url: str) -> SharedBudgetStore:
    """The process's one connection to the store at `url` (opened on first use)."""
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = SharedBudgetStore(url)
        return store
