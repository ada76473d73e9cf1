"""Whether a repository's index is behind its code, for every hit search answers with: its
source has moved since the commit the collection holds, or a run of it failed after that
index was built (so what the source holds now did not reach it).

Asking costs a `git ls-remote` for a remote, a stat walk for a folder: a long-lived server
keeps each answer for `ttl_s` and, once it has one, refreshes it in the background, so a
query never waits on a network it does not need.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg

from .core.source.git import SourceError
from .core.source.registry import RepoSpec
from .status import failed_after_index, source_moved, source_version

FRESHNESS_TTL_S = 30.0


@dataclass(frozen=True)
class Freshness:
    stale: bool | None  # None: not known (the source cannot be reached)
    reason: str  # why it is stale, or what is not known; "" when in step
    head: str | None  # the source's commit (or folder fingerprint) now

    def as_dict(self) -> dict:
        return asdict(self)


def repository_freshness(instance: dg.DagsterInstance, spec: RepoSpec | None, registry_file: Path,
                         indexed: str) -> Freshness:
    """`spec`'s freshness now, against `indexed` (the commit its collection holds)."""
    if spec is None:
        return Freshness(None, "no longer registered: nothing keeps this index fresh", None)
    try:
        head = source_version(instance, spec, registry_file)
    except SourceError as exc:
        return Freshness(None, f"source unreachable: {exc}", None)
    reasons = []
    if source_moved(indexed, head):
        reasons.append(f"source has moved: indexed {indexed[:12]}, source now at {head[:12]}")
    failure = failed_after_index(instance, spec.name)
    if failure:
        reasons.append(failure)
    return Freshness(bool(reasons), "; ".join(reasons), head)


class FreshnessCache:
    """Each repository's Freshness, computed by `compute(repo, indexed)` at most once per
    `ttl_s`; an answer past its time is given while a background thread renews it."""

    def __init__(self, compute: Callable[[str, str], Freshness], ttl_s: float = FRESHNESS_TTL_S):
        self._compute = compute
        self._ttl = ttl_s
        self._known: dict[str, tuple[str, float, Freshness]] = {}  # repo -> (indexed, when, answer)
        self._lock = threading.Lock()
        self._renewing: set[str] = set()

    def get(self, repo: str, indexed: str) -> Freshness:
        with self._lock:
            known = self._known.get(repo)
        if known is None or known[0] != indexed:  # new, or re-indexed since: ask now
            return self._renew(repo, indexed)
        if time.monotonic() - known[1] > self._ttl:
            with self._lock:
                start = repo not in self._renewing
                self._renewing.add(repo)
            if start:
                threading.Thread(target=self._renew, args=(repo, indexed), daemon=True,
                                 name=f"freshness-{repo}").start()
        return known[2]

    def _renew(self, repo: str, indexed: str) -> Freshness:
        try:
            answer = self._compute(repo, indexed)
        except Exception as exc:  # never fail a search for it
            answer = Freshness(None, f"freshness not known: {type(exc).__name__}: {exc}", None)
        with self._lock:
            self._known[repo] = (indexed, time.monotonic(), answer)
            self._renewing.discard(repo)
        return answer
