"""Which failed requests are retried, and how long to wait first: the server's hint
(`retry-after-ms`, `Retry-After`, `x-ratelimit-reset-*`) or exponential backoff."""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time

from .providers import EmbeddingResponseError

MAX_WAIT_S = 60.0  # longest single wait before a retry, whatever the server suggests
# Full jitter: retry k waits uniform(0, min(cap, base * 2**k)): within 0.2 s, 0.4 s, ... 30 s.
# Early retries are quick because sporadic failures are the common case (a request that
# is unlucky several times in a row would otherwise hold up the whole run); a server that
# keeps refusing is handled by halving concurrency. Ten retries wait ~1 minute in all.
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 30.0
DEFAULT_MAX_RETRIES = 10


# -- how long the server asks us to wait ---------------------------------------------


def _header_seconds(value: str | None) -> float | None:
    """Seconds in `Retry-After` (a number or an HTTP date) or in OpenAI's reset durations
    such as "1s", "6m0s", "20ms"."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    total, matched = 0.0, False
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value):
        matched = True
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    if matched:
        return total
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait the response asks for, or None (then exponential backoff decides).

    `retry-after-ms`, then `Retry-After`: the server's own answer. Otherwise the
    `x-ratelimit-reset-*` of the limits reported exhausted (`x-ratelimit-remaining-*` of
    0), or, when none says so, the earliest reset: waiting for a whole-minute token window
    to refill completely would be far longer than needed for one request.
    """
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    after = _header_seconds(headers.get("retry-after"))
    if after is not None:
        return after
    resets = {kind: _header_seconds(headers.get(f"x-ratelimit-reset-{kind}")) for kind in ("requests", "tokens")}
    resets = {k: v for k, v in resets.items() if v is not None}
    exhausted = [v for k, v in resets.items() if headers.get(f"x-ratelimit-remaining-{k}", "").strip() == "0"]
    if exhausted:
        return max(exhausted)
    return min(resets.values()) if resets else None


# -- what is retried ---------------------------------------------------------------------


# A 400/413/422 that says this about its inputs concerns some of them, not the request as a
# whole (OpenAI: "maximum context length is 8192 tokens", "'$.input' is invalid"; TEI:
# "Input validation error"; Ollama: "input length exceeds the context length").
_SIZE_WORDS = re.compile(r"token|too large|too many|too long|context length")
_INPUT_WORDS = re.compile(r"\binput")


def classify_error(exc: BaseException) -> str:
    """'rate_limit', 'server', 'network', 'too_large', 'invalid_input', 'response',
    'bad_response' or 'fatal'. 'too_large' and 'invalid_input' are the server refusing one or
    more inputs: the loop splits such a request, and skips an input refused alone."""
    import openai

    if isinstance(exc, EmbeddingResponseError):
        return "response" if exc.retryable else "bad_response"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit"
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, asyncio.TimeoutError)):
        return "network"
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return "server"
        if exc.status_code in (400, 413, 422):
            text = str(exc).lower()
            if _SIZE_WORDS.search(text) or getattr(exc, "code", None) == "context_length_exceeded":
                return "too_large"
            if getattr(exc, "param", None) == "input" or _INPUT_WORDS.search(text):
                return "invalid_input"
    return "fatal"


RETRYABLE = {"rate_limit", "server", "network", "response"}
REFUSED_INPUTS = {"too_large", "invalid_input"}  # split the request; an input refused alone is skipped


def server_reason(exc: BaseException) -> str:
    """The server's own words for a refusal (an OpenAI-style error's `message`), else the error."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) and message else f"{type(exc).__name__}: {exc}"


def backoff_seconds(attempt: int, hinted: float | None) -> float:
    """The wait before retry number `attempt` (1, 2, ...): the server's hint with a little
    jitter, else exponential backoff with full jitter."""
    if hinted is not None:
        return min(MAX_WAIT_S, hinted) * random.uniform(1.0, 1.2)
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt))
