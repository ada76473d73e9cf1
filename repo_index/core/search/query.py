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

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from ..embed.model import EmbeddingModel
from ..index.client import (ChromaSettings, ChromaUnavailable, get_collection, open_client, read_lock, unreadable,
                            unreadable_note)
from ..index.lexical import lexical_path
from ..index.query import Hit, NoPlaces
from ..index.spans import spans_path
from ..index.sync import REBUILD_SUFFIX
from ..settings import Settings, get_settings
from .errors import SearchError, ServiceUnavailable, UnknownRepository, check_query, none_searched
from .hybrid import repository_hits
from .query_vectors import QueryVectors, collection_model, embed_query

__all__ = ["Hits", "Indexed", "Searcher", "SearchError", "ServiceUnavailable", "UnknownRepository", "embed_query",
           "search"]


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
        self.vectors = QueryVectors(self.settings)

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
        return collection_model(target.repo, target.metadata, self.settings)

    def warm(self, notice: Callable[[str], None] | None = None) -> list[str]:
        """Load each indexed repository's query model now, so the first search does not pay
        for it; the models loaded, by name."""
        loaded = []
        for model in dict.fromkeys(self._models_of(self.indexed(notice=notice))[0].values()):
            self.vectors.get(model, "warm up")
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
                        vectors[model] = self.vectors.for_repository(repo, model, query)
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
            raise none_searched(unavailable)
        hits.sort(key=lambda h: h.score, reverse=True)
        return Hits(hits[:k], unavailable, [t.repo for t in targets], {t.repo: t.commit for t in targets})

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
            except NoPlaces as exc:
                raise _Unreadable(str(exc)) from None
            except Exception:
                reason = unreadable(coll)  # a bad filter fails a sound collection: that is raised
                if reason is None:
                    raise
                raise _Unreadable(unreadable_note(target.repo, reason, chroma)) from None


class _Unreadable(Exception):
    """This repository's collection cannot be read now; the message says why."""


def search(query: str, repos: list[str] | None = None, k: int = 5, where: dict | None = None,
           language: str | None = None, path_glob: str | None = None, settings: Settings | None = None,
           chroma: ChromaSettings | None = None, notice: Callable[[str], None] | None = None,
           mode: str = "hybrid") -> Hits:
    """One search with a Searcher of its own (see Searcher.search)."""
    with Searcher(settings, chroma) as searcher:
        return searcher.search(query, repos, k, where, language, path_glob, notice, mode)


def _spans_file(chroma: ChromaSettings, collection: str):
    """The last sync's file of `collection`'s ids and paths, if this machine keeps one."""
    try:
        return spans_path(chroma, collection)
    except ValueError:  # a server's settings naming no folder of ours: paths are read from Chroma
        return None
