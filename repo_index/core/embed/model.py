"""Which embedding model a run uses, resolved once: provider, name, dimensions, the window
it reads, the tokenizer its chunk budget is counted in, and where it is served.

`resolve_model` is the one place that turns configuration into an `EmbeddingModel`;
chunking (the budget), embedding, the asset checks and search all use its answer, and the
collection records it (`collection_metadata`), so a query is embedded by exactly the model
that built the collection it searches (`from_collection_metadata`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlsplit, urlunsplit

from ..chunk.records import MIN_MAX_TOKENS

LOCAL_MODEL = "all-MiniLM-L6-v2"
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"


@dataclass(frozen=True)
class EmbeddingModel:
    provider: str  # "openai" (any OpenAI-compatible server) or "local"
    name: str
    dimensions: int
    window_tokens: int  # what the model reads, in its own tokens
    default_max_tokens: int  # chunk budget, in `encoding` tokens, that fits the window
    usd_per_million_tokens: float
    encoding: str = "cl100k_base"
    base_url: str | None = None  # None: OpenAI itself (or no server: local)
    send_dimensions: bool = False  # ask the server for shortened vectors (text-embedding-3)

    def chunk_budget(self, max_tokens: int | None) -> int:
        """The chunk budget: the model's default, or an explicit one that fits its window."""
        if max_tokens is None:
            return self.default_max_tokens
        if max_tokens > self.window_tokens:
            raise ValueError(
                f"max_tokens={max_tokens} exceeds what {self.name} reads ({self.window_tokens} tokens); "
                f"the rest of each chunk would be silently dropped. Use at most {self.window_tokens} "
                f"(default {self.default_max_tokens}).")
        if max_tokens < MIN_MAX_TOKENS:
            raise ValueError(f"max_tokens={max_tokens} is too small to hold a header and code; "
                             f"use at least {MIN_MAX_TOKENS}")
        return max_tokens

    def collection_metadata(self) -> dict:
        """What a collection records of the model that built it (no credentials)."""
        return {"embedding_model": self.name, "dimensions": self.dimensions, "embedding_provider": self.provider,
                "embedding_base_url": _without_credentials(self.base_url) or "",
                "embedding_encoding": self.encoding, "embedding_window_tokens": self.window_tokens}


# Known models; a model not listed here (a self-hosted one behind an OpenAI-compatible
# server) needs its dimensions configured.
_OPENAI = {
    "text-embedding-3-small": EmbeddingModel("openai", "text-embedding-3-small", 1536, 8191, 512, 0.02),
    "text-embedding-3-large": EmbeddingModel("openai", "text-embedding-3-large", 3072, 8191, 512, 0.13),
    "text-embedding-ada-002": EmbeddingModel("openai", "text-embedding-ada-002", 1536, 8191, 512, 0.10),
}
_SHORTENABLE = {"text-embedding-3-small", "text-embedding-3-large"}
# MiniLM reads 256 word pieces and silently drops the rest; ~200 cl100k tokens of code fit.
LOCAL = EmbeddingModel("local", LOCAL_MODEL, 384, 256, 200, 0.0)


class ModelError(ValueError):
    """The configured embedding model cannot be used as asked; the message says why."""


def resolve_model(provider: str = "auto", model: str | None = None, dimensions: int | None = None,
                  base_url: str | None = None, has_api_key: bool = False) -> EmbeddingModel:
    """The model a run embeds with. `auto` is `openai` when an API key is set, otherwise
    the offline local model."""
    if provider == "auto":
        provider = "openai" if has_api_key else "local"
    if provider == "local":
        if model and model != LOCAL_MODEL:
            raise ModelError(f"the local provider ships only {LOCAL_MODEL!r}, not {model!r}")
        if dimensions and dimensions != LOCAL.dimensions:
            raise ModelError(f"{LOCAL_MODEL} has {LOCAL.dimensions} dimensions, not {dimensions}")
        return LOCAL
    if provider != "openai":
        raise ModelError(f"unknown embedding provider {provider!r}: use 'auto', 'openai' or 'local'")
    name = model or DEFAULT_OPENAI_MODEL
    known = _OPENAI.get(name)
    if known is None:
        if not dimensions:
            raise ModelError(
                f"embedding model {name!r} is not one repo_index knows: set its vector size with "
                "REPO_INDEX_EMBEDDING_DIMENSIONS (or the embedder resource's `dimensions`)")
        # The server's model has one size: declare it, never ask for another.
        return EmbeddingModel("openai", name, dimensions, 8191, 512, 0.0, base_url=base_url)
    if dimensions and dimensions != known.dimensions:
        if name not in _SHORTENABLE:
            raise ModelError(f"{name} has {known.dimensions} dimensions and cannot shorten them to {dimensions}")
        return replace(known, dimensions=dimensions, base_url=base_url, send_dimensions=True)
    return replace(known, base_url=base_url)


def from_collection_metadata(meta: dict, base_url: str | None = None) -> EmbeddingModel | None:
    """The model a collection was built with, from its metadata (None if it records none).

    `base_url` (the configured one) serves collections that do not record theirs: the
    URL a collection records is written without credentials, so the configured one wins
    when both name the same server."""
    name, dims = meta.get("embedding_model"), int(meta.get("dimensions") or 0)
    if not name or not dims:
        return None
    provider = meta.get("embedding_provider") or ("local" if name == LOCAL_MODEL else "openai")
    recorded = meta.get("embedding_base_url") or None
    if recorded and _without_credentials(base_url) != recorded:
        base_url = recorded
    try:
        return resolve_model(provider, name, dims, base_url if provider == "openai" else None)
    except ModelError:
        return None


def _without_credentials(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
