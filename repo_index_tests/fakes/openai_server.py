"""A real, local, OpenAI-compatible embeddings HTTP server for tests and benchmarks.

OpenAI is unreachable from the test machine, so the suite talks to this server over
real HTTP on 127.0.0.1 (point ``AsyncOpenAI(base_url=server.base_url)`` or
``OPENAI_BASE_URL`` at it). Standard library + numpy only.

Endpoints
    POST /v1/embeddings (and /embeddings)   OpenAI-shaped request and response
    GET  /v1/models     (and /models)       a small model list
    GET  /health                            no auth, no latency, not counted

Embeddings are deterministic bags of hashed words (see :func:`fake_embedding`), so
texts sharing words are close and semantic search is testable.

Token counting is approximate: a string input counts ``ceil(len(text) / 4)`` tokens
(at least 1), roughly tiktoken's rate for English prose; a token-id input counts
``len(ids)``. Limits and ``usage`` use the same count. Replace ``server.token_counter``
(a ``str -> int`` callable) to count exactly, e.g. with tiktoken.

Faults (:class:`Fault`) and all counters apply to the embeddings endpoint only; faults
are consumed only by requests that passed the API-key check. ``refused_substrings``
makes the server refuse (400) every request holding an input that contains one.

Standalone (benchmarks)::

    python -m repo_index_tests.fakes.openai_server --port 8089 --latency 0.05
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import json
import math
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import numpy as np

__all__ = ["FakeOpenAIServer", "Fault", "fake_embedding", "words", "approx_token_count", "MODEL_DIMENSIONS"]

MODEL_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
DEFAULT_DIMENSIONS = 1536
# Models that, like on OpenAI, reject the `dimensions` request field.
FIXED_DIMENSION_MODELS = {"text-embedding-ada-002"}

# ---------------------------------------------------------------------------
# Deterministic embeddings
# ---------------------------------------------------------------------------

_RUN = re.compile(r"[A-Za-z0-9]+")  # "_" and punctuation separate words: snake_case splits here
# camelCase / PascalCase / acronyms / digits: "HTTPServerV2" -> HTTP, Server, V, 2
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def words(text: str) -> list[str]:
    """Lower-cased words of ``text``, with identifiers split on snake_case and camelCase."""
    return [w.lower() for run in _RUN.findall(text) for w in _CAMEL.findall(run)]


@lru_cache(maxsize=1 << 16)
def _bucket(word: str, dimensions: int) -> tuple[int, float]:
    # blake2b, not hash(): Python's str hash is salted per process.
    h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return h % dimensions, (1.0 if (h >> 63) & 1 else -1.0)


def fake_embedding(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> np.ndarray:
    """Deterministic, L2-normalised float32 bag-of-hashed-words vector.

    Each word adds ±1 to one hashed dimension, so cosine similarity (= dot product)
    grows with the words two texts share: "parse config file" is close to
    ``def parse_config_file(path):`` and near-orthogonal to unrelated text.
    A text without words hashes as a whole, so every vector has norm 1.
    """
    vec = np.zeros(dimensions, dtype=np.float32)
    for w in words(text) or ["\0" + text]:
        i, sign = _bucket(w, dimensions)
        vec[i] += sign
    norm = float(np.linalg.norm(vec))
    if norm == 0.0:  # every word cancelled out in a collision: fall back to the whole text
        i, sign = _bucket("\0" + text, dimensions)
        vec[i], norm = sign, 1.0
    return vec / np.float32(norm)


def approx_token_count(text: str) -> int:
    """~4 characters per token, at least 1 (see the module docstring)."""
    return max(1, math.ceil(len(text) / 4))


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------

_ERROR_DEFAULTS: dict[int, tuple[str, str, str | None]] = {  # status -> (message, type, code)
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model.", "invalid_request_error", None),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"),
    408: ("Request timed out.", "timeout", None),
    409: ("Conflict.", "invalid_request_error", None),
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour. Build with the factories, e.g. ``Fault.status(429, retry_after=0.2)``."""

    kind: str  # status | timeout | drip | drop | drop_mid_response | malformed | wrong_count | wrong_dims
    status_code: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    message: str | None = None
    delay: float = 0.0

    @classmethod
    def status(
        cls,
        code: int,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        message: str | None = None,
    ) -> Fault:
        """Answer ``code`` with an OpenAI-style error body. ``retry_after`` (seconds) sets
        ``Retry-After``; ``headers`` adds e.g. ``{"x-ratelimit-reset-requests": "20ms"}``."""
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs["Retry-After"] = f"{retry_after:g}"
        return cls("status", status_code=code, headers=tuple(hdrs.items()), message=message)

    @classmethod
    def timeout(cls, seconds: float) -> Fault:
        """Sleep ``seconds``, then answer normally (a client with a shorter timeout gives up)."""
        return cls("timeout", delay=seconds)

    @classmethod
    def drip(cls, seconds_per_byte: float) -> Fault:
        """Answer 200 with headers at once, then the body one byte every ``seconds_per_byte``
        (a client whose timeout bounds each read, not the request, waits for the whole body)."""
        return cls("drip", delay=seconds_per_byte)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without sending any response."""
        return cls("drop")

    @classmethod
    def drop_mid_response(cls) -> Fault:
        """Send 200 headers (full Content-Length) and half of the body, then close."""
        return cls("drop_mid_response")

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with a body that is not valid JSON."""
        return cls("malformed")

    @classmethod
    def wrong_count(cls) -> Fault:
        """Answer 200 with the last embedding missing from ``data``."""
        return cls("wrong_count")

    @classmethod
    def wrong_dims(cls) -> Fault:
        """Answer 200 with every vector one element short (2 long if 1 was asked for)."""
        return cls("wrong_dims")


class _ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, headers: tuple = ()):
        super().__init__(message)
        self.status, self.headers = status, headers
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}


# ---------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # benchmarks open many connections at once
    fake: FakeOpenAIServer

    def handle_error(self, request, client_address):  # quiet: clients vanish mid-request in fault tests
        pass


class FakeOpenAIServer:
    """OpenAI-compatible embeddings server on 127.0.0.1, served from a background thread.

    Every attribute below may be changed while the server runs.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        max_inputs_per_request: int = 2048,
        max_tokens_per_input: int = 8191,
        max_tokens_per_request: int = 300_000,
        valid_api_keys: set[str] | None = None,
        token_counter: Callable[[str], int] = approx_token_count,
    ):
        self.host, self.port = host, port
        self.latency = latency  # seconds, slept by every /v1 request while counted in flight
        self.max_inputs_per_request = max_inputs_per_request
        self.max_tokens_per_input = max_tokens_per_input
        self.max_tokens_per_request = max_tokens_per_request
        self.valid_api_keys = valid_api_keys  # None: any non-empty key; else others get 401
        self.token_counter = token_counter
        # An input containing one of these is refused (400, the whole request) as OpenAI refuses
        # one over the model's context length, or with `refusal_message` / `refusal_param` instead.
        self.refused_substrings: set[str] = set()
        self.refusal_message: str | None = None
        self.refusal_param: str | None = None
        self._lock = threading.Lock()
        self._faults: collections.deque[Fault] = collections.deque()
        self._persistent: tuple[int, Fault] | None = None  # (every n-th request, fault)
        self._persistent_seen = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.in_flight = 0  # embeddings requests being handled right now
        self.reset_counters()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        # Binding and listening happen here, so the server accepts connections on return.
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.fake = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-openai-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping on latency / timeout faults
        httpd.shutdown()
        httpd.server_close()
        # Handler threads of idle keep-alive connections block in recv(); unblock them.
        with self._lock:
            conns, self._connections = list(self._connections), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- faults ------------------------------------------------------------

    def add_faults(self, *faults: Fault) -> None:
        """Queue faults; each embeddings request consumes the next one, in order."""
        with self._lock:
            self._faults.extend(faults)

    def fail_every(self, n: int, fault: Fault) -> None:
        """Inject ``fault`` into the n-th, 2n-th, ... request from now on (queued faults go first)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        with self._lock:
            self._persistent, self._persistent_seen = (n, fault), 0

    def always(self, fault: Fault) -> None:
        """Inject ``fault`` into every request until :meth:`clear_faults`."""
        self.fail_every(1, fault)

    def clear_faults(self) -> None:
        """Drop queued faults and the persistent one."""
        with self._lock:
            self._faults.clear()
            self._persistent = None

    @property
    def faults_pending(self) -> int:
        with self._lock:
            return len(self._faults)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            if self._persistent is not None:
                n, fault = self._persistent
                self._persistent_seen += 1
                if self._persistent_seen % n == 0:
                    return fault
            return None

    # -- counters ----------------------------------------------------------

    def reset_counters(self) -> None:
        with self._lock:
            self.requests_total = 0  # embeddings requests received (any outcome)
            # time.monotonic() at each embeddings request's arrival (any outcome): the server's
            # own clock, for tests of a rate budget that count requests per window.
            self._arrivals: list[float] = []
            self.requests_ok = 0  # answered 200 with a correct result
            self._status_counts: collections.Counter[int] = collections.Counter()
            self.dropped = 0  # connections closed by drop / drop_mid_response faults
            self.inputs_embedded = 0  # inputs in requests answered correctly
            self._embedded_texts: list[str] = []
            self._api_keys: set[str] = set()
            self.models_seen: set[tuple[str, int]] = set()  # (model, dimensions) of valid requests
            self._path_counts: collections.Counter[str] = collections.Counter()
            # in_flight is live state, not a counter: max_in_flight restarts from its level.
            self.max_in_flight = self.in_flight

    @property
    def status_counts(self) -> collections.Counter[int]:
        """Responses per HTTP status sent; dropped connections count in ``dropped`` only."""
        with self._lock:
            return collections.Counter(self._status_counts)

    @property
    def embedded_texts(self) -> list[str]:
        """Every input embedded by a correct response, in order (token-id inputs as "1 2 3")."""
        with self._lock:
            return list(self._embedded_texts)

    @property
    def arrival_times(self) -> list[float]:
        """time.monotonic() at the arrival of every embeddings request, in order."""
        with self._lock:
            return list(self._arrivals)

    @property
    def embedded_counts(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(self._embedded_texts)

    @property
    def api_keys(self) -> set[str]:
        """Every distinct non-empty bearer key received, on any endpoint."""
        with self._lock:
            return set(self._api_keys)

    @property
    def path_counts(self) -> collections.Counter[str]:
        """Requests per "METHOD /path" as received, e.g. "GET /v1/models", on every endpoint."""
        with self._lock:
            return collections.Counter(self._path_counts)

    # -- request processing (called from handler threads) ------------------

    def _enter(self, key: str) -> None:
        with self._lock:
            self._path_counts[key] += 1

    def _embeddings_arrived(self) -> None:
        arrived = time.monotonic()
        with self._lock:
            self.requests_total += 1
            self._arrivals.append(arrived)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _embeddings_left(self, status: int | None, texts: list[str] | None = None) -> None:
        with self._lock:
            self.in_flight -= 1
            if status is None:
                self.dropped += 1
                return
            self._status_counts[status] += 1
            if texts is not None:
                self.requests_ok += 1
                self.inputs_embedded += len(texts)
                self._embedded_texts.extend(texts)

    def _check_auth(self, authorization: str | None) -> None:
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise _ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="missing_api_key",
            )
        with self._lock:
            self._api_keys.add(key)
        if self.valid_api_keys is not None and key not in self.valid_api_keys:
            # Unlike OpenAI, never echo the key (not even masked): tests assert keys do not leak.
            raise _ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def _parse(self, raw: bytes) -> tuple[str, list[str], list[int], int, str]:
        """Validate an embeddings request -> (model, texts, token counts, dimensions, encoding)."""
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise _ApiError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise _ApiError(400, "The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _ApiError(400, "You must provide a model parameter.", param="model")

        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _ApiError(400, f"Invalid value for 'encoding_format': {encoding!r}. "
                            "Supported values are: 'float' and 'base64'.", param="encoding_format")

        native = MODEL_DIMENSIONS.get(model, DEFAULT_DIMENSIONS)
        dims = body.get("dimensions")
        if dims is None:
            dims = native
        elif model in FIXED_DIMENSION_MODELS:
            raise _ApiError(400, "This model does not support specifying dimensions.", param="dimensions")
        elif type(dims) is not int or not 1 <= dims <= native:
            raise _ApiError(400, f"Invalid value for 'dimensions' = {dims}. Must be between 1 and {native}.",
                            param="dimensions")

        inp = body.get("input")
        if isinstance(inp, str):
            inputs: list[Any] = [inp]
        elif isinstance(inp, list) and inp and all(type(t) is int for t in inp):
            inputs = [inp]  # one token-id array
        elif isinstance(inp, list) and inp and (all(isinstance(t, str) for t in inp) or all(
                isinstance(t, list) and t and all(type(x) is int for x in t) for t in inp)):
            inputs = inp
        else:
            raise _ApiError(400, "'$.input' is invalid. Please check the API reference: "
                            "https://platform.openai.com/docs/api-reference.", param="input")
        if len(inputs) > self.max_inputs_per_request:
            raise _ApiError(400, f"Invalid 'input': array too long. Expected an array with maximum length "
                            f"{self.max_inputs_per_request}, but got an array with length {len(inputs)} instead.",
                            code="array_above_max_length", param="input")

        texts, counts = [], []
        for item in inputs:
            if isinstance(item, str):
                if not item:
                    raise _ApiError(400, "'$.input' is invalid: input cannot be an empty string.", param="input")
                texts.append(item)
                counts.append(self.token_counter(item))
            else:
                texts.append(" ".join(map(str, item)))
                counts.append(len(item))
        for n in counts:
            if n > self.max_tokens_per_input:
                raise _ApiError(400, f"This model's maximum context length is {self.max_tokens_per_input} tokens, "
                                f"however you requested {n} tokens ({n} in your prompt; 0 for the completion). "
                                "Please reduce your prompt; or completion length.", code="context_length_exceeded")
        for i, text in enumerate(texts):
            if any(needle in text for needle in self.refused_substrings):
                if self.refusal_message is not None:
                    raise _ApiError(400, self.refusal_message, param=self.refusal_param)
                raise _ApiError(400, f"This model's maximum context length is {self.max_tokens_per_input} tokens, "
                                f"however you requested {self.max_tokens_per_input + 1} tokens in 'input[{i}]'. "
                                "Please reduce your prompt.", code="context_length_exceeded", param="input")
        total = sum(counts)
        if total > self.max_tokens_per_request:
            raise _ApiError(400, f"Requested {total} tokens, max {self.max_tokens_per_request} tokens per request",
                            type_="max_tokens_per_request", code="max_tokens_per_request")
        return model, texts, counts, dims, encoding


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients expect
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no per-request stderr lines
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.fake._lock:
            self.server.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.fake._lock:
            self.server.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # -- plumbing ----------------------------------------------------------

    def _route(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        return path[3:] if path.startswith("/v1/") else path

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _raw_response(self, status: int, body: bytes, headers: tuple = (), content_type: str = "application/json") -> bytes:
        # Built by hand so the whole response leaves in one write, after the in-flight
        # counter dropped: a client cannot see the answer before the server stops counting it.
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
                 f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
                 f"x-request-id: req_{uuid.uuid4().hex}", "openai-processing-ms: 1"]
        lines += [f"{k}: {v}" for k, v in headers]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # the client gave up (timeout fault) or the server is stopping
            self.close_connection = True

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.server.fake._stopping.wait(seconds)

    def _send_json(self, status: int, obj: Any, headers: tuple = ()) -> None:
        self._write(self._raw_response(status, json.dumps(obj).encode(), headers))

    # -- endpoints ---------------------------------------------------------

    def do_GET(self) -> None:
        fake, route = self.server.fake, self._route()
        fake._enter(f"GET {self.path.split('?', 1)[0]}")
        if route == "/health":
            return self._send_json(200, {"status": "ok"})
        if route == "/stats":  # counters for a benchmark driving the server from another process
            return self._send_json(200, {"requests_total": fake.requests_total, "requests_ok": fake.requests_ok,
                                         "inputs_embedded": fake.inputs_embedded, "max_in_flight": fake.max_in_flight})
        if route != "/models":
            return self._send_json(404, _ApiError(404, f"Unknown path {self.path}").body)
        self._sleep(fake.latency)
        try:
            fake._check_auth(self.headers.get("Authorization"))
        except _ApiError as e:
            return self._send_json(e.status, e.body)
        self._send_json(200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 1705953180, "owned_by": "system"} for m in MODEL_DIMENSIONS]})

    def do_POST(self) -> None:
        fake, route = self.server.fake, self._route()
        body = self._read_body()  # always drain, so a dropped connection closes cleanly (FIN, not RST)
        fake._enter(f"POST {self.path.split('?', 1)[0]}")
        if route != "/embeddings":
            return self._send_json(404, _ApiError(404, f"Unknown path {self.path}").body)
        fake._embeddings_arrived()
        texts_ok: list[str] | None = None
        try:
            status, out, texts_ok = self._embeddings(fake, body)
        except Exception as e:  # a bug here must reach the test as a 500, not a hang
            status, out = 500, self._raw_response(500, json.dumps(_ApiError(500, repr(e), "server_error").body).encode())
        fake._embeddings_left(status, texts_ok)  # before the write: see _raw_response
        if status is None:  # dropped
            self.close_connection = True
            if out:
                self._write(out)
            return
        if status == 200 and self._drip is not None:
            return self._write_dripping(out, self._drip)
        self._write(out)

    _drip: float | None = None  # seconds per body byte, set by a drip fault for this request

    def _write_dripping(self, raw: bytes, seconds_per_byte: float) -> None:
        head, _, payload = raw.partition(b"\r\n\r\n")
        self._write(head + b"\r\n\r\n")
        for i in range(len(payload)):
            if self.close_connection or self.server.fake._stopping.is_set():
                return  # the client gave up (the write failed) or the server is stopping
            self._sleep(seconds_per_byte)
            self._write(payload[i:i + 1])

    def _embeddings(self, fake: FakeOpenAIServer, body: bytes) -> tuple[int | None, bytes, list[str] | None]:
        """Returns (status or None if the connection is dropped, raw bytes to send, texts if correct)."""
        self._drip = None
        self._sleep(fake.latency)
        try:
            fake._check_auth(self.headers.get("Authorization"))
            fault = fake._next_fault()
            kind = fault.kind if fault else None
            self._drip = fault.delay if kind == "drip" else None
            if fault is not None and kind == "status":
                code = fault.status_code
                msg, type_, err_code = _ERROR_DEFAULTS.get(code, (HTTPStatus(code).phrase, "server_error", None))
                raise _ApiError(code, fault.message or msg, type_, err_code, headers=fault.headers)
            if kind == "drop":
                return None, b"", None
            if kind == "malformed":
                return 200, self._raw_response(200, b'{"object": "list", "data": [{"object": "embedd'), None
            if kind == "timeout":
                self._sleep(fault.delay)
            model, texts, counts, dims, encoding = fake._parse(body)
            with fake._lock:
                fake.models_seen.add((model, dims))
        except _ApiError as e:
            return e.status, self._raw_response(e.status, json.dumps(e.body).encode(), e.headers), None

        vectors = [fake_embedding(t, dims) for t in texts]
        if kind == "wrong_dims":
            vectors = [np.resize(v, dims - 1 if dims > 1 else 2) for v in vectors]
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if encoding == "base64"
                 else v.tolist()} for i, v in enumerate(vectors)]
        if kind == "wrong_count":
            data = data[:-1]
        total = sum(counts)
        raw = self._raw_response(200, json.dumps({
            "object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": total, "total_tokens": total}}).encode(), (("openai-model", model),))
        if kind == "drop_mid_response":
            head, _, payload = raw.partition(b"\r\n\r\n")
            return None, head + b"\r\n\r\n" + payload[: len(payload) // 2], None
        if kind in ("wrong_dims", "wrong_count"):
            return 200, raw, None
        return 200, raw, texts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Fake OpenAI-compatible embeddings server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    p.add_argument("--max-inputs-per-request", type=int, default=2048)
    p.add_argument("--max-tokens-per-input", type=int, default=8191)
    p.add_argument("--max-tokens-per-request", type=int, default=300_000)
    a = p.parse_args(argv)
    server = FakeOpenAIServer(a.host, a.port, latency=a.latency, max_inputs_per_request=a.max_inputs_per_request,
                              max_tokens_per_input=a.max_tokens_per_input,
                              max_tokens_per_request=a.max_tokens_per_request)
    with server:
        print(server.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
