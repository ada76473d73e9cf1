"""Semantic search over one or all repository collections.

The query is embedded with the model each collection was built with (recorded in its
metadata), so results are never computed across two embedding spaces; hits from several
repositories are merged by score.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from ..chunk.tokens import count_tokens, get_encoding
from ..embed.cache import VectorCache, text_key
from ..embed.model import EmbeddingModel, ModelError, from_collection_metadata
from ..embed.providers import Embedder, make_embedder
from ..embed.results import mask_secrets
from ..index.client import (ChromaSettings, ChromaUnavailable, get_collection, open_client, read_lock, unreadable,
                            unreadable_note)
from ..index.lexical import lexical_path
from ..index.query import Hit
from ..index.spans import spans_path
from ..index.sync import REBUILD_SUFFIX
from ..settings import OPENAI_KEY_ENV, Settings, get_settings
from .hybrid import MODES, repository_hits


class SearchError(RuntimeError):
    pass


class Hits(list):
    """Hits, best first; `unavailable`: each repository that could not be searched -> why."""

    def __init__(self, hits=(), unavailable: dict[str, str] | None = None):
        super().__init__(hits)
        self.unavailable = unavailable or {}


def embed_query(embedder: Embedder, query: str, cache: VectorCache | None = None) -> np.ndarray:
    """One query vector, embedded on the model's query side (its query prefix before it);
    with a cache, a query asked before costs no request."""
    limit = embedder.info.window_tokens
    read = embedder.info.prefixed("query", query)
    if count_tokens(read, get_encoding(embedder.info.encoding)) > limit:
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


def _collection_model(repo: str, meta: dict, settings: Settings) -> EmbeddingModel:
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


def search(
    query: str,
    repos: list[str] | None = None,
    k: int = 5,
    where: dict | None = None,
    language: str | None = None,
    path_glob: str | None = None,
    settings: Settings | None = None,
    chroma: ChromaSettings | None = None,
    notice: Callable[[str], None] | None = None,
    mode: str = "hybrid",
) -> Hits:
    """Top-`k` chunks for `query` across `repos` (default: every indexed repository).
    `settings` default to the environment's; `chroma` to the Chroma they name; `notice`
    hears when the search waits for a writer of the embedded Chroma. A collection Chroma
    cannot read (e.g. damaged by a full disk) is left out and named in `Hits.unavailable`,
    so one repository never stops search in the others. `mode`: "hybrid" (vectors and
    words fused, the default), "vector" or "lexical" (see hybrid.py)."""
    if not query.strip():
        raise SearchError("empty query")
    _check_text(query)
    if mode not in MODES:
        raise SearchError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
    settings = settings or get_settings()
    chroma = chroma or ChromaSettings.from_settings(settings)
    # The embedded folder is read only under the shared lock (index/client.py), held to the
    # end so no sync swaps a collection between listing and querying it.
    with read_lock(chroma, notice):
        targets = _targets(open_client(chroma), chroma, repos)
        models = {repo: _collection_model(repo, coll.metadata or {}, settings) for repo, coll in targets}
        query_vectors: dict[EmbeddingModel, np.ndarray] = {}
        for repo, model in models.items():
            if model not in query_vectors and mode != "lexical":
                query_vectors[model] = _embed_for(repo, model, query, settings)
        if language:
            where = {"$and": [where, {"language": language}]} if where else {"language": language}
        hits: list[Hit] = []
        unavailable: dict[str, str] = {}
        for repo, coll in targets:
            try:
                hits.extend(repository_hits(
                    coll, repo, query, query_vectors.get(models[repo]), k, mode,
                    lexical_path(chroma.lexical_dir(), coll.name) if chroma.lexical_dir() else None,
                    where, language, path_glob, notice, _spans_file(chroma, coll.name) if path_glob else None))
            except ChromaUnavailable:
                raise
            except Exception:
                reason = unreadable(coll)  # a bad filter fails a sound collection: that is raised
                if reason is None:
                    raise
                unavailable[repo] = unreadable_note(repo, reason, chroma)
    if unavailable and len(unavailable) == len(targets):
        raise SearchError("no repository could be searched: " + "; ".join(f"{r}: {n}" for r, n in unavailable.items()))
    hits.sort(key=lambda h: h.score, reverse=True)
    return Hits(hits[:k], unavailable)


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


def _embed_for(repo: str, model: EmbeddingModel, query: str, settings: Settings) -> np.ndarray:
    """The query's vector in `model`'s space, or a SearchError naming the provider to set up."""
    try:
        vector = embed_query(make_embedder(model, api_key=settings.api_key()), query)
    except SearchError:
        raise
    except Exception as exc:  # provider unavailable: say which model is needed
        raise SearchError(mask_secrets(
            f"cannot embed the query with {model.name} ({model.dimensions} dims), the model {repo!r} was "
            f"indexed with: {type(exc).__name__}: {exc}. Configure that provider (e.g. {OPENAI_KEY_ENV}) "
            f"or rebuild the index with the current one: `repo-index index {repo}`", settings.api_key())
        ) from None
    if vector.shape[0] != model.dimensions:
        raise SearchError(f"query vector has {vector.shape[0]} dims but {repo!r} holds {model.dimensions}")
    return vector


def _spans_file(chroma: ChromaSettings, collection: str):
    """The last sync's file of `collection`'s ids and paths, if this machine keeps one."""
    try:
        return spans_path(chroma, collection)
    except ValueError:  # a server's settings naming no folder of ours: paths are read from Chroma
        return None


def _targets(client, chroma: ChromaSettings, repos: list[str] | None) -> list[tuple[str, object]]:
    """(repository, collection) for each repository asked for, or for every indexed one."""
    if repos:
        targets = []
        for repo in repos:
            coll = get_collection(client, chroma.collection_name(repo))
            if coll is None:
                raise SearchError(f"repository {repo!r} has no index yet: run `repo-index index {repo}`")
            targets.append((repo, coll))
        return targets
    prefix = chroma.collection_prefix
    targets = [(c.name[len(prefix):], client.get_collection(c.name, embedding_function=None))
               for c in client.list_collections()
               if c.name.startswith(prefix) and not c.name.endswith(REBUILD_SUFFIX)]
    if not targets:
        raise SearchError("no repository is indexed yet: run `repo-index index NAME`")
    return targets
