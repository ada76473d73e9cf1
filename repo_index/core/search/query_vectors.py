"""A query's vector: the model a collection was built with, the query embedded on that
model's query side, and the vectors already computed kept (an agent repeats and rephrases
its queries)."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict

import numpy as np

from ..chunk.tokens import count_tokens, get_encoding
from ..embed.cache import CacheStore, text_key
from ..embed.model import EmbeddingModel, ModelError, from_collection_metadata
from ..embed.providers import Embedder, make_embedder
from ..embed.results import mask_secrets
from ..settings import OPENAI_KEY_ENV, Settings
from .errors import SearchError

QUERY_VECTORS_KEPT = 1024


def embed_query(embedder: Embedder, query: str, cache: CacheStore | None = None) -> np.ndarray:
    """One query vector, embedded on the model's query side (its query prefix before it);
    with a cache, a query asked before costs no request."""
    limit = embedder.info.window_tokens
    read = embedder.info.prefixed("query", query)
    # A token holds at least one byte: a query of no more bytes than the window fits, known
    # without loading the encoding (~0.13 s, paid by every in-process CLI search).
    if len(read.encode("utf-8", "surrogatepass")) > limit and \
            count_tokens(read, get_encoding(embedder.info.encoding)) > limit:
        raise SearchError(f"query is longer than {embedder.model} reads ({limit} tokens)")
    key = text_key(read)
    if cache is not None:
        hit = cache.get_many(embedder.model, embedder.dimensions, [key]).get(key)
        if hit is not None:
            return hit

    async def one():
        try:
            return await embedder.embed([query], "query")
        finally:
            await embedder.aclose()

    # A local model encodes here and now: an event loop per query cost more than the encoding.
    encode = getattr(embedder, "encode", None)
    vector = (encode([query], "query") if encode is not None else asyncio.run(one()))[0]
    if cache is not None:
        cache.put_many(embedder.model, embedder.dimensions, [(key, vector)])
    return vector


class QueryVectors:
    """Query vectors by (model, query), the last QUERY_VECTORS_KEPT kept. Safe to use from
    several threads at once."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._vectors: OrderedDict[tuple[EmbeddingModel, str], np.ndarray] = OrderedDict()
        self._vectors_lock = threading.Lock()
        # The local model's tokenizer is not safe to share between threads ("Already borrowed").
        self._encode_lock = threading.Lock()

    def get(self, model: EmbeddingModel, query: str) -> np.ndarray:
        """`query`'s vector in `model`'s space; computed once while kept."""
        key = (model, query)
        with self._vectors_lock:
            if key in self._vectors:
                self._vectors.move_to_end(key)
                return self._vectors[key]
        embedder = make_embedder(model, api_key=self.settings.api_key())
        if getattr(embedder, "encode", None) is not None:
            with self._encode_lock:
                vector = embed_query(embedder, query)
        else:
            vector = embed_query(embedder, query)
        with self._vectors_lock:
            self._vectors[key] = vector
            while len(self._vectors) > QUERY_VECTORS_KEPT:
                self._vectors.popitem(last=False)
        return vector

    def for_repository(self, repo: str, model: EmbeddingModel, query: str) -> np.ndarray:
        """The query's vector in `model`'s space, or a SearchError naming the provider to set up."""
        try:
            vector = self.get(model, query)
        except SearchError:
            raise
        except Exception as exc:  # provider unavailable: say which model is needed
            raise SearchError(mask_secrets(
                f"cannot embed the query with {model.name} ({model.dimensions} dims), the model {repo!r} was "
                f"indexed with: {type(exc).__name__}: {exc}. Configure that provider (e.g. {OPENAI_KEY_ENV}) "
                f"or rebuild the index with the current one: `repo-index index {repo}`", self.settings.api_key())
            ) from None
        if vector.shape[0] != model.dimensions:
            raise SearchError(f"query vector has {vector.shape[0]} dims but {repo!r} holds {model.dimensions}")
        return vector


def collection_model(repo: str, meta: dict, settings: Settings) -> EmbeddingModel:
    try:
        model = from_collection_metadata(meta, settings.openai_base_url)
    except ModelError as exc:  # a local model no longer on this machine
        raise SearchError(f"{repo!r} was indexed with the local model {meta.get('embedding_model')!r}, which "
                          f"cannot be loaded: {exc}. Restore it, or rebuild the index: `repo-index index {repo}`"
                          ) from None
    if model is None:
        raise SearchError(f"collection for {repo!r} does not record its embedding model: re-run `repo-index index {repo}`")
    if model.provider == "openai" and settings.api_key() is None:
        raise SearchError(
            f"{repo!r} was indexed with {model.name}; set {OPENAI_KEY_ENV} (and OPENAI_BASE_URL for a compatible "
            f"server) to query it, or rebuild the index with the current embedder: `repo-index index {repo}`")
    return model
