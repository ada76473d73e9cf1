"""Why a search cannot be answered: the errors every interface maps to its own form (the
server: HTTP statuses and MCP error results; the CLI: one line), and the checks a query
passes before anything is loaded."""

from __future__ import annotations

from .hybrid import MODES


class SearchError(RuntimeError):
    """A query that cannot be answered; the message says why and what to do."""


class UnknownRepository(SearchError):
    """A repository asked for by name that is not registered, or has no index yet."""


class ServiceUnavailable(SearchError):
    """What search needs is down (the Chroma server); asking again later may work."""


def check_query(query: str, mode: str = "hybrid") -> None:
    """A SearchError for a query no search can answer, before anything is loaded."""
    if not query.strip():
        raise SearchError("empty query")
    _check_text(query)
    if mode not in MODES:
        raise SearchError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")


def _check_text(query: str) -> None:
    """A SearchError when `query` holds what UTF-8 cannot encode: a byte the command line
    passed that is not UTF-8 (Python keeps it as a lone surrogate, U+DC80-U+DCFF) or a lone
    surrogate from a caller. Left alone it failed inside the embedding request, reported as
    a provider that needs configuring."""
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = ", ".join(f"byte 0x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"U+{ord(c):04X}"
                        for c in query[exc.start:exc.end])
        raise SearchError(f"the query is not valid UTF-8 text ({bad} at character {exc.start + 1}): "
                          "pass it as UTF-8") from None


def none_searched(unavailable: dict[str, str]) -> ServiceUnavailable:
    """One message for a search that reached no repository: each reason once, with the
    repositories it holds for. Unavailable, not a bad query: the same query can be answered
    once the model is configured, the collection repaired or the slow part done."""
    if len(unavailable) == 1:
        return ServiceUnavailable(next(iter(unavailable.values())))
    by_reason: dict[str, list[str]] = {}
    for repo, reason in unavailable.items():
        by_reason.setdefault(reason, []).append(repo)
    return ServiceUnavailable("no repository could be searched: " + "; ".join(
        f"{', '.join(repos)}: {reason}" for reason, repos in by_reason.items()))
