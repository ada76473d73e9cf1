"""Search over one or all repository collections, by one `Searcher` a process keeps.

The query is embedded with the model each collection was built with (recorded in its
metadata), so results are never computed across two embedding spaces; hits from several
repositories are merged by score. The repositories are searched concurrently, each under
its own shared lock of the embedded Chroma, and a search with a deadline returns what
finished in time, naming the repositories that did not. A `Searcher` keeps what it loads
(the local model, query vectors already computed, the Chroma client): the CLI makes one
per command, the search server one for its life.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

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

QUERY_VECTORS_KEPT = 1024  # per Searcher: an agent repeats and rephrases queries


class SearchError(RuntimeError):
    """A query that cannot be answered; the message says why and what to do."""


class UnknownRepository(SearchError):
    """A repository asked for by name that is not registered, or has no index yet."""


class ServiceUnavailable(SearchError):
    """What search needs is down (the Chroma server); asking again later may work."""


class Hits(list):
    """Hits, best first; `unavailable`: each repository that could not be searched -> why
    (its collection unreadable, its model not configured, no answer before the deadline);
    `searched`: the repositories asked, in order; `commits`: repository -> the commit its
    collection holds."""

    def __init__(self, hits=(), unavailable: dict[str, str] | None = None, searched: Iterable[str] = (),
                 commits: dict[str, str] | None = None):
        super().__init__(hits)
        self.unavailable = unavailable or {}
        self.searched = list(searched)
        self.commits = commits or {}


@dataclass(frozen=True)
class Indexed:
    """A repository's collection as search sees it."""
    repo: str
    collection: str  # its name in Chroma
    metadata: dict = field(hash=False, compare=False)

    @property
    def commit(self) -> str:
        return str(self.metadata.get("commit") or "")


def embed_query(embedder: Embedder, query: str, cache: VectorCache | None = None) -> np.ndarray:
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


def check_query(query: str, mode: str = "hybrid") -> None:
    """A SearchError for a query no search can answer, before anything is loaded."""
    if not query.strip():
        raise SearchError("empty query")
    _check_text(query)
    if mode not in MODES:
        raise SearchError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")


class Searcher:
    """Search across repositories, keeping what it loads. `registered`, if given, lists the
    registry's names, so a repository asked for that is not registered is told apart from
    one not indexed yet. Safe to use from several threads at once."""

    def __init__(self, settings: Settings | None = None, chroma: ChromaSettings | None = None,
                 registered: Callable[[], Iterable[str]] | None = None, workers: int = 8):
        self.settings = settings or get_settings()
        self.chroma = chroma or ChromaSettings.from_settings(self.settings)
        self._registered = registered
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="search")
        self._vectors: OrderedDict[tuple[EmbeddingModel, str], np.ndarray] = OrderedDict()
        self._vectors_lock = threading.Lock()
        # The local model's tokenizer is not safe to share between threads ("Already borrowed").
        self._encode_lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what is indexed ----------------------------------------------------------------

    def indexed(self, repos: list[str] | None = None, notice: Callable[[str], None] | None = None) -> list[Indexed]:
        """The collections of `repos` (default: every indexed repository), read under the
        embedded Chroma's shared lock. Raises UnknownRepository for a name asked for that
        has no collection, saying whether it is registered."""
        with read_lock(self.chroma, notice):
            client = self._client()
            if repos:
                found = []
                for repo in dict.fromkeys(repos):
                    coll = get_collection(client, self.chroma.collection_name(repo))
                    if coll is None:
                        raise self._unknown(repo)
                    found.append(Indexed(repo, coll.name, dict(coll.metadata or {})))
                return found
            prefix = self.chroma.collection_prefix
            return sorted((Indexed(c.name[len(prefix):], c.name, dict(c.metadata or {}))
                           for c in client.list_collections()
                           if c.name.startswith(prefix) and not c.name.endswith(REBUILD_SUFFIX)),
                          key=lambda t: t.repo)

    def model_of(self, target: Indexed) -> EmbeddingModel:
        """The model `target` was built with, ready to embed queries (a SearchError saying
        what to configure otherwise)."""
        return _collection_model(target.repo, target.metadata, self.settings)

    def warm(self, notice: Callable[[str], None] | None = None) -> list[str]:
        """Load each indexed repository's query model now, so the first search does not pay
        for it; the models loaded, by name."""
        loaded = []
        for model in dict.fromkeys(self._models_of(self.indexed(notice=notice))[0].values()):
            self.query_vector(model, "warm up")
            loaded.append(model.name)
        return loaded

    # -- searching ----------------------------------------------------------------------

    def search(self, query: str, repos: list[str] | None = None, k: int = 5, where: dict | None = None,
               language: str | None = None, path_glob: str | None = None,
               notice: Callable[[str], None] | None = None, mode: str = "hybrid",
               deadline_s: float | None = None) -> Hits:
        """Top-`k` chunks for `query` across `repos` (default: every indexed repository).
        `notice` hears when the search waits for a writer of the embedded Chroma. A
        repository that cannot be searched (collection unreadable, its model not
        configured, no answer within `deadline_s`) is left out and named in
        `Hits.unavailable`, so one repository never stops search in the others; when none
        can be searched, SearchError. `mode`: "hybrid" (vectors and words fused, the
        default), "vector" or "lexical" (see hybrid.py)."""
        check_query(query, mode)
        started = time.monotonic()
        targets = self.indexed(repos, notice)
        if not targets:
            raise SearchError("no repository is indexed yet: run `repo-index index NAME`")
        models, unavailable = self._models_of(targets)
        vectors: dict[EmbeddingModel, np.ndarray] = {}
        if mode != "lexical":
            for repo, model in models.items():
                if model not in vectors and repo not in unavailable:
                    try:
                        vectors[model] = self._embed_for(repo, model, query)
                    except SearchError as exc:
                        for other, m in models.items():
                            if m == model:
                                unavailable[other] = str(exc)
        if language:
            where = {"$and": [where, {"language": language}]} if where else {"language": language}
        runnable = [t for t in targets if t.repo not in unavailable]
        futures = {self._pool.submit(self._repository_hits, t, query, vectors.get(models.get(t.repo)), k, mode, where,
                                     language, path_glob, notice): t for t in runnable}
        remaining = None if deadline_s is None else max(0.0, deadline_s - (time.monotonic() - started))
        _, late = wait(futures, timeout=remaining)
        hits: list[Hit] = []
        for future, target in futures.items():
            if future in late:
                future.cancel()
                unavailable[target.repo] = (f"no answer within the deadline of {deadline_s:g} s (a slow "
                                            "repository, or an index run writing the embedded Chroma)")
                continue
            exc = future.exception()
            if exc is None:
                hits.extend(future.result())
            elif isinstance(exc, _Unreadable):
                unavailable[target.repo] = str(exc)
            elif isinstance(exc, ChromaUnavailable):
                raise ServiceUnavailable(str(exc)) from None
            else:
                raise exc
        if unavailable and len(unavailable) == len(targets):
            raise _none_searched(unavailable)
        hits.sort(key=lambda h: h.score, reverse=True)
        return Hits(hits[:k], unavailable, [t.repo for t in targets], {t.repo: t.commit for t in targets})

    def query_vector(self, model: EmbeddingModel, query: str) -> np.ndarray:
        """`query`'s vector in `model`'s space; computed once per Searcher."""
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

    # -- parts --------------------------------------------------------------------------

    def _client(self):
        try:
            return open_client(self.chroma)
        except ChromaUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from None

    def _unknown(self, repo: str) -> UnknownRepository:
        if self._registered is not None:
            names = sorted(self._registered())
            if repo not in names:
                known = f" (registered: {', '.join(names)})" if names else " (none is registered)"
                return UnknownRepository(f"repository {repo!r} is not registered{known}: "
                                         f"add it with `repo-index add {repo} SOURCE`")
        return UnknownRepository(f"repository {repo!r} has no index yet: run `repo-index index {repo}`")

    def _models_of(self, targets: list[Indexed]) -> tuple[dict[str, EmbeddingModel], dict[str, str]]:
        models, unavailable = {}, {}
        for target in targets:
            try:
                models[target.repo] = self.model_of(target)
            except SearchError as exc:
                unavailable[target.repo] = str(exc)
        return models, unavailable

    def _embed_for(self, repo: str, model: EmbeddingModel, query: str) -> np.ndarray:
        """The query's vector in `model`'s space, or a SearchError naming the provider to set up."""
        try:
            vector = self.query_vector(model, query)
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

    def _repository_hits(self, target: Indexed, query: str, vector: np.ndarray | None, k: int, mode: str,
                         where: dict | None, language: str | None, path_glob: str | None,
                         notice: Callable[[str], None] | None) -> list[Hit]:
        # Each repository under its own shared lock, taken again here: a search that gave up
        # on it at the deadline must not leave it being read without one.
        chroma = self.chroma
        with read_lock(chroma, notice):
            coll = get_collection(open_client(chroma), target.collection)
            if coll is None:
                raise _Unreadable("its collection was removed while it was being searched")
            lexical_dir = chroma.lexical_dir()
            try:
                return repository_hits(
                    coll, target.repo, query, vector, k, mode,
                    lexical_path(lexical_dir, coll.name) if lexical_dir else None,
                    where, language, path_glob, notice, _spans_file(chroma, coll.name) if path_glob else None)
            except ChromaUnavailable:
                raise
            except Exception:
                reason = unreadable(coll)  # a bad filter fails a sound collection: that is raised
                if reason is None:
                    raise
                raise _Unreadable(unreadable_note(target.repo, reason, chroma)) from None


def _none_searched(unavailable: dict[str, str]) -> ServiceUnavailable:
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


class _Unreadable(Exception):
    """This repository's collection cannot be read now; the message says why."""


def search(query: str, repos: list[str] | None = None, k: int = 5, where: dict | None = None,
           language: str | None = None, path_glob: str | None = None, settings: Settings | None = None,
           chroma: ChromaSettings | None = None, notice: Callable[[str], None] | None = None,
           mode: str = "hybrid") -> Hits:
    """One search with a Searcher of its own (see Searcher.search)."""
    with Searcher(settings, chroma) as searcher:
        return searcher.search(query, repos, k, where, language, path_glob, notice, mode)


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


def _spans_file(chroma: ChromaSettings, collection: str):
    """The last sync's file of `collection`'s ids and paths, if this machine keeps one."""
    try:
        return spans_path(chroma, collection)
    except ValueError:  # a server's settings naming no folder of ours: paths are read from Chroma
        return None
