"""Semantic search over one or all repository collections.

The query is embedded with the model each collection was built with (recorded in its
metadata), so results are never computed across two embedding spaces; hits from several
repositories are merged by score.
"""

from __future__ import annotations

import asyncio
import os

import numpy as np

from ..embed.loop import text_key
from ..embed.providers import LOCAL_MODEL, Embedder, embedder_for_collection
from ..index.chroma import (
    ChromaSettings, Hit, chroma_settings_from_env, collection_name, get_collection, open_client,
    query_collection,
)
from ..chunk.tokens import count_tokens, get_encoding
from ..embed.cache import VectorCache


class SearchError(RuntimeError):
    pass


def embed_query(embedder: Embedder, query: str, cache: VectorCache | None = None) -> np.ndarray:
    """One query vector; with a cache, a query asked before costs no request."""
    limit = embedder.info.window_tokens
    if count_tokens(query, get_encoding(embedder.info.encoding)) > limit:
        raise SearchError(f"query is longer than {embedder.model} reads ({limit} tokens)")
    key = text_key(query)
    if cache is not None:
        hit = cache.get_many(embedder.model, embedder.dimensions, [key]).get(key)
        if hit is not None:
            return hit

    async def one():
        try:
            return await embedder.embed([query])
        finally:
            await embedder.aclose()

    vector = asyncio.run(one())[0]
    if cache is not None:
        cache.put_many(embedder.model, embedder.dimensions, [(key, vector)])
    return vector


def search(
    query: str,
    repos: list[str] | None = None,
    k: int = 5,
    where: dict | None = None,
    language: str | None = None,
    path_glob: str | None = None,
    settings: ChromaSettings | None = None,
) -> list[Hit]:
    """Top-`k` chunks for `query` across `repos` (default: every indexed repository)."""
    if not query.strip():
        raise SearchError("empty query")
    settings = settings or chroma_settings_from_env()
    client = open_client(settings)
    prefix = settings.collection_prefix
    if repos:
        targets = []
        for repo in repos:
            coll = get_collection(client, collection_name(prefix, repo))
            if coll is None:
                raise SearchError(f"repository {repo!r} has no index yet: run `repo-index index {repo}`")
            targets.append((repo, coll))
    else:
        targets = [(c.name[len(prefix):], client.get_collection(c.name, embedding_function=None))
                   for c in client.list_collections() if c.name.startswith(prefix)]
        if not targets:
            raise SearchError("no repository is indexed yet: run `repo-index index NAME`")
    if language:
        where = {"$and": [where, {"language": language}]} if where else {"language": language}

    query_vectors: dict[tuple[str, int], object] = {}
    hits: list[Hit] = []
    for repo, coll in targets:
        meta = coll.metadata or {}
        model, dims = meta.get("embedding_model"), int(meta.get("dimensions", 0))
        if not model or not dims:
            raise SearchError(f"collection for {repo!r} does not record its embedding model: re-run `repo-index index {repo}`")
        if (model, dims) not in query_vectors:
            if model != LOCAL_MODEL and not os.environ.get("OPENAI_API_KEY"):
                raise SearchError(
                    f"{repo!r} was indexed with {model}; set OPENAI_API_KEY (and OPENAI_BASE_URL for a compatible "
                    f"server) to query it, or rebuild the index with the current embedder: `repo-index index {repo}`")
            try:
                query_vectors[(model, dims)] = embed_query(embedder_for_collection(model, dims), query)
            except SearchError:
                raise
            except Exception as exc:  # provider unavailable: say which model is needed
                raise SearchError(
                    f"cannot embed the query with {model} ({dims} dims), the model {repo!r} was indexed with: "
                    f"{type(exc).__name__}: {exc}. Configure that provider (e.g. OPENAI_API_KEY) or rebuild "
                    f"the index with the current one: `repo-index index {repo}`"
                ) from exc
        vector = query_vectors[(model, dims)]
        if vector.shape[0] != dims:
            raise SearchError(f"query vector has {vector.shape[0]} dims but {repo!r} holds {dims}")
        hits.extend(query_collection(coll, repo, vector, k, where, path_glob))
    hits.sort(key=lambda h: h.score, reverse=True)
    return hits[:k]
