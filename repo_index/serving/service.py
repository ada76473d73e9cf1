"""What the server, the MCP tools and the CLI answer: searches, the repositories with their
freshness, and an indexed file's lines, as plain JSON-ready dicts.

One `IndexService` per process: its Searcher keeps the models and query vectors, its
freshness answers are kept for a while (freshness.py), and the registry is read again only
when its file changes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..core.index.client import get_collection, open_client, read_lock
from ..core.search.query import Hits, Searcher, SearchError, UnknownRepository
from ..core.search.snippets import best_lines
from ..core.settings import Settings, get_settings
from ..core.source.at_commit import CodeUnavailable, indexed_lines, valid_path
from ..core.source.registry import RegistryError, RepoSpec, load_registry
from ..freshness import FRESHNESS_TTL_S, Freshness, FreshnessCache, repository_freshness

DEFAULT_DEADLINE_S = 10.0  # a search over many repositories answers with what finished by then


class IndexService:
    def __init__(self, settings: Settings | None = None, instance=None, deadline_s: float | None = DEFAULT_DEADLINE_S,
                 freshness_ttl_s: float = FRESHNESS_TTL_S):
        """`deadline_s`: how long a search waits for its repositories (None: as long as
        they take, e.g. for a writer of the embedded Chroma to finish, as the CLI does)."""
        self.settings = settings or get_settings()
        self.registry_file = self.settings.registry_path()
        self.deadline_s = deadline_s
        self.searcher = Searcher(self.settings, registered=lambda: self._specs().keys())
        self._instance = instance
        self._registry: tuple[tuple, dict[str, RepoSpec]] | None = None
        self._registry_lock = threading.Lock()
        self.freshness = FreshnessCache(self._freshness, freshness_ttl_s)

    def close(self) -> None:
        self.searcher.close()

    # -- the three answers --------------------------------------------------------------

    def search(self, query: str, repositories: list[str] | None = None, k: int = 5, language: str | None = None,
               path_glob: str | None = None, mode: str = "hybrid", deadline_s: float | None = None,
               with_text: bool = True, notice=None) -> dict:
        """Ranked hits, each naming its source (see `hit_record`), the repositories
        searched, and those left out with why."""
        hits: Hits = self.searcher.search(query, repositories or None, k=k, language=language, path_glob=path_glob,
                                          mode=mode, deadline_s=deadline_s or self.deadline_s, notice=notice)
        fresh = {repo: self.freshness.get(repo, hits.commits.get(repo, "")) for repo in {h.repo for h in hits}}
        return {
            "query": query, "mode": mode, "searched": hits.searched,
            "hits": [hit_record(h, query, hits.commits.get(h.repo, ""), fresh[h.repo], with_text) for h in hits],
            "unavailable": hits.unavailable,
        }

    def repositories(self) -> list[dict]:
        """Every registered or indexed repository: its source, what its collection holds
        (commit, model) and its freshness."""
        specs = self._specs()
        held = {t.repo: t for t in self.searcher.indexed()}
        rows = []
        for name in [*specs, *(r for r in held if r not in specs)]:
            target = held.get(name)
            spec = specs.get(name)
            row = {"name": name, "source": spec.source if spec else None, "indexed": target is not None,
                   "indexed_commit": target.commit if target else None,
                   "model": (target.metadata.get("embedding_model") if target else None)}
            if target is None:
                row.update(stale=None, stale_reason="not indexed yet: run `repo-index index " + name + "`", head=None)
            else:
                row.update(self.freshness.get(name, target.commit).as_dict())
                row["stale_reason"] = row.pop("reason")
            rows.append(row)
        return rows

    def read_code(self, repository: str, path: str, start_line: int = 1, end_line: int | None = None) -> dict:
        """Lines of `path` in `repository` at its indexed commit (see at_commit.py)."""
        spec = self._specs().get(repository)
        [target] = self.searcher.indexed([repository])  # UnknownRepository when it is not indexed
        if spec is None:
            raise UnknownRepository(f"repository {repository!r} is no longer registered: its source is not known")
        valid_path(path)
        with read_lock(self.searcher.chroma):
            coll = get_collection(open_client(self.searcher.chroma), target.collection)
            held = coll is not None and coll.get(where={"path": path}, limit=1, include=[])["ids"]
        if not held:
            raise CodeUnavailable(f"{path} is not in the index of {repository!r} (use a path a search hit gives)")
        fresh = self.freshness.get(repository, target.commit)
        lines = indexed_lines(spec, self.registry_file, self.settings.clones_dir(), target.commit, path,
                              start_line, end_line, unchanged=fresh.head == target.commit)
        return {"repository": repository, "path": lines.path, "start_line": lines.start_line,
                "end_line": lines.end_line, "total_lines": lines.total_lines, "commit": lines.commit,
                "at_indexed_commit": lines.exact, "note": lines.note,
                "stale": fresh.stale,
                "stale_reason": fresh.reason, "text": lines.text}

    # -- parts --------------------------------------------------------------------------

    def _specs(self) -> dict[str, RepoSpec]:
        """The registry's entries by name, read again when the file changes."""
        try:
            st = os.stat(self.registry_file)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            return {}
        with self._registry_lock:
            if self._registry is None or self._registry[0] != stamp:
                try:
                    specs = load_registry(Path(self.registry_file))
                except RegistryError as exc:
                    raise SearchError(str(exc)) from None
                self._registry = (stamp, {s.name: s for s in specs})
            return self._registry[1]

    def _freshness(self, repo: str, indexed: str) -> Freshness:
        if self._instance is None:
            from filelock import FileLock

            from ..instance import open_instance

            # One process at a time: searches started together on a new project each created
            # the instance's SQLite storage, racing, and left it with two schema heads that
            # every later command refused ("alembic_version has more than one head").
            with FileLock(str(self.settings.data_dir() / "dagster-instance.lock")):
                self._instance = open_instance(self.settings)
        return repository_freshness(self._instance, self._specs().get(repo), self.registry_file, indexed)


def hit_record(hit, query: str, commit: str, fresh: Freshness, with_text: bool = True) -> dict:
    """A hit as every interface gives it: where it is, what it is, how it scored, what the
    index held it at and whether that is behind, and the lines that matched best."""
    names = tuple(filter(None, hit.defines.split(", ")))
    snippet = best_lines(hit.text, hit.start_line, query, names, language=hit.language)
    record = {"repository": hit.repo, "path": hit.path, "start_line": hit.start_line, "end_line": hit.end_line,
              "symbol": hit.symbol, "language": hit.language, "score": hit.score, "indexed_commit": commit,
              "stale": fresh.stale, "stale_reason": fresh.reason,
              "snippet": {"start_line": snippet.start_line, "end_line": snippet.end_line, "text": snippet.text}}
    if with_text:
        record["text"] = hit.text
    return record
