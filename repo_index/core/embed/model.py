"""Which embedding model a run uses, resolved once: provider, name, dimensions, the window
it reads, the tokenizer its chunk budget is counted in, and where it is served.

`resolve_model` is the one place that turns configuration into an `EmbeddingModel`;
chunking (the budget), embedding, the asset checks and search all use its answer, and the
collection records it (`collection_metadata`), so a query is embedded by exactly the model
that built the collection it searches (`from_collection_metadata`), with the same prefixes.

Each model has a query side and a document side: the prefix put before a query and the one
put before a chunk (`prefixes.py`; empty for OpenAI's models and all-MiniLM-L6-v2). The
cache key is the hash of the text with its prefix (`prefixed`), so vectors made with one
document prefix are never reused for another, and the keys of unprefixed models are the
same as before prefixes existed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlsplit, urlunsplit

from typing import Literal

from ..chunk.records import MIN_MAX_TOKENS
from .local_models import LOCAL_MODEL, LocalModelMissing, describe, identity
from .prefixes import declared_prefixes, known_prefixes

Kind = Literal["query", "document"]
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
    query_prefix: str = ""  # put before every query (e5's "query: ", nomic's "search_query: ")
    document_prefix: str = ""  # put before every chunk; part of what its cache key covers

    def prefixed(self, kind: Kind, text: str) -> str:
        """What the model reads for `text` as a query or as a document."""
        return (self.query_prefix if kind == "query" else self.document_prefix) + text

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
                "embedding_encoding": self.encoding, "embedding_window_tokens": self.window_tokens,
                "embedding_query_prefix": self.query_prefix, "embedding_document_prefix": self.document_prefix}


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
                  base_url: str | None = None, has_api_key: bool = False, query_prefix: str | None = None,
                  document_prefix: str | None = None) -> EmbeddingModel:
    """The model a run embeds with. `auto` is `openai` when an API key is set, otherwise
    the offline local model: `model` names it (a sentence-transformers hub id in the
    Hugging Face cache or a folder; default the bundled all-MiniLM-L6-v2).

    The prefixes are the ones given, else those a local model declares, else those its
    name is known to want (`prefixes.py`), else none."""
    if provider == "auto":
        provider = "openai" if has_api_key else "local"
    if provider == "local":
        resolved = _local_model(model or LOCAL_MODEL, dimensions)
    elif provider == "openai":
        resolved = _openai_model(model or DEFAULT_OPENAI_MODEL, dimensions, base_url)
    else:
        raise ModelError(f"unknown embedding provider {provider!r}: use 'auto', 'openai' or 'local'")
    query = resolved.query_prefix if query_prefix is None else query_prefix
    document = resolved.document_prefix if document_prefix is None else document_prefix
    if (query, document) == (resolved.query_prefix, resolved.document_prefix):
        return resolved
    return replace(resolved, query_prefix=query, document_prefix=document,
                   default_max_tokens=_default_budget(resolved.window_tokens, document))


def _openai_model(name: str, dimensions: int | None, base_url: str | None) -> EmbeddingModel:
    known = _OPENAI.get(name)
    if known is None:
        if not dimensions:
            raise ModelError(
                f"embedding model {name!r} is not one repo_index knows: set its vector size with "
                "REPO_INDEX_EMBEDDING_DIMENSIONS (or the embedder resource's `dimensions`)")
        # The server's model has one size: declare it, never ask for another.
        return EmbeddingModel("openai", name, dimensions, 8191, 512, 0.0, base_url=base_url,
                              query_prefix=known_prefixes(name).query, document_prefix=known_prefixes(name).document)
    if dimensions and dimensions != known.dimensions:
        if name not in _SHORTENABLE:
            raise ModelError(f"{name} has {known.dimensions} dimensions and cannot shorten them to {dimensions}")
        return replace(known, dimensions=dimensions, base_url=base_url, send_dimensions=True)
    return replace(known, base_url=base_url)


def _local_model(name: str, dimensions: int | None) -> EmbeddingModel:
    if name == LOCAL_MODEL:
        found = LOCAL
    else:
        try:
            info = describe(name)
        except LocalModelMissing as exc:
            raise ModelError(str(exc)) from None
        prefixes = declared_prefixes(info.prompts) or known_prefixes(name)
        found = EmbeddingModel("local", identity(name), info.dimensions, info.max_seq_length,
                               _default_budget(info.max_seq_length, prefixes.document), 0.0,
                               query_prefix=prefixes.query, document_prefix=prefixes.document)
    if dimensions and dimensions != found.dimensions:
        raise ModelError(f"{found.name} has {found.dimensions} dimensions, not {dimensions}")
    return found


def _default_budget(window: int, document_prefix: str) -> int:
    """The chunk budget, in cl100k tokens, that fits a window of `window` word pieces with
    the document prefix in front: MiniLM's 200 of 256 (code runs ~1.25 word pieces per
    cl100k token), at most text-embedding-3's 512."""
    from ..chunk.tokens import count_tokens, get_encoding

    prefix = count_tokens(document_prefix, get_encoding()) if document_prefix else 0
    return max(MIN_MAX_TOKENS, min(512, window * 200 // 256 - prefix * 5 // 4))


def from_collection_metadata(meta: dict, base_url: str | None = None) -> EmbeddingModel | None:
    """The model a collection was built with, from its metadata (None if it records none),
    with the prefixes it was built with (none for a collection written before they were
    recorded: nothing was prefixed then). A local model no longer on this machine is a
    ModelError naming it.

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
    prefixes = meta.get("embedding_query_prefix") or "", meta.get("embedding_document_prefix") or ""
    try:
        return resolve_model(provider, name, dims, base_url if provider == "openai" else None,
                             query_prefix=prefixes[0], document_prefix=prefixes[1])
    except ModelError:
        if provider == "local" and name != LOCAL_MODEL:
            raise
        return None


def _without_credentials(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
