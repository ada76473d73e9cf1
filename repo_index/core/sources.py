"""Sources: a local directory is read in place; a git URL is cloned once into a cache
folder and fetched on later runs, then checked out (detached) at the requested ref.

Git runs without hooks, without prompts, with a timeout, and never with a URL that
could be read as an option (`--` separates it), so an untrusted registry entry cannot
run commands here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .registry import RepoSpec, resolve_local_source

GIT_TIMEOUT_S = 600


class SourceError(RuntimeError):
    """The repository's source cannot be read; the message names the entry and the fix."""


@dataclass(frozen=True)
class SourceTree:
    root: Path
    commit: str | None  # None for a local directory that is not a git work tree
    kind: str  # "local" or "git"


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", SSH_ASKPASS="true", GIT_LFS_SKIP_SMUDGE="1")
    return env


def git(*args: str, cwd: Path | None = None, timeout: float = GIT_TIMEOUT_S) -> str:
    cmd = [
        "git",
        "-c", "core.hooksPath=/dev/null",
        "-c", "protocol.ext.allow=never",
        "-c", "advice.detachedHead=false",
        *args,
    ]
    try:
        done = subprocess.run(
            cmd, cwd=cwd, env=_git_env(), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"git {args[0]} timed out after {timeout:.0f}s") from exc
    if done.returncode != 0:
        raise SourceError(f"git {args[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()


def head_commit(path: Path) -> str | None:
    """HEAD of the work tree containing `path`, or None when it is not in a git repository."""
    try:
        return git("rev-parse", "--verify", "HEAD", cwd=path, timeout=30)
    except (SourceError, NotADirectoryError, FileNotFoundError):
        return None


def _resolve_ref(clone: Path, ref: str | None) -> str:
    candidates = [f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref] if ref else ["refs/remotes/origin/HEAD"]
    for candidate in candidates:
        try:
            return git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", cwd=clone, timeout=30)
        except SourceError:
            continue
    raise SourceError(f"ref {ref!r} not found (tried a branch, a tag and a commit)")


def clone_path(spec: RepoSpec, cache_dir: Path) -> Path:
    return cache_dir / spec.name


def _git_url(spec: RepoSpec, registry_file: Path) -> str:
    if spec.is_git_url:
        return spec.source
    # A local path with a ref is read as a git repository at that ref, through a clone.
    return resolve_local_source(spec, registry_file).as_uri()


def fetch_git(spec: RepoSpec, registry_file: Path, cache_dir: Path) -> SourceTree:
    url = _git_url(spec, registry_file)
    clone = clone_path(spec, cache_dir)
    if clone.exists():
        try:
            same = git("remote", "get-url", "origin", cwd=clone, timeout=30) == url
        except SourceError:
            same = False
        if not same:  # the entry now points elsewhere: start over
            shutil.rmtree(clone)
    if not clone.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = clone.with_name(clone.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        git("clone", "--quiet", "--no-checkout", "--", url, str(partial))
        partial.rename(clone)
    else:
        git("fetch", "--quiet", "--prune", "--tags", "--force", "origin", cwd=clone)
        git("remote", "set-head", "origin", "--auto", cwd=clone, timeout=60)
    commit = _resolve_ref(clone, spec.ref)
    git("checkout", "--quiet", "--force", "--detach", commit, cwd=clone)
    git("clean", "-q", "-ffdx", cwd=clone)
    return SourceTree(root=clone, commit=commit, kind="git")


def resolve_source(spec: RepoSpec, registry_file: Path, cache_dir: Path) -> SourceTree:
    """The working tree to index for `spec`, and the commit it is at."""
    try:
        if spec.is_git_url or spec.ref:
            return fetch_git(spec, registry_file, cache_dir)
        root = resolve_local_source(spec, registry_file)
        if not root.is_dir():
            raise SourceError(f"path {str(root)!r} does not exist or is not a directory")
        return SourceTree(root=root, commit=head_commit(root), kind="local")
    except SourceError as exc:
        raise SourceError(
            f"repository {spec.name!r} (source {spec.source!r}): {exc}. "
            "Fix the entry in the registry (`repo-index add {0} SOURCE --replace`) or the source.".format(spec.name)
        ) from exc


def current_head(spec: RepoSpec, registry_file: Path, timeout: float = 30) -> str | None:
    """The commit the source points at now, without fetching into the cache (None: not git)."""
    if not spec.is_git_url and not spec.ref:
        root = resolve_local_source(spec, registry_file)
        return head_commit(root) if root.is_dir() else None
    url = _git_url(spec, registry_file)
    refs = git("ls-remote", "--", url, *([spec.ref, f"{spec.ref}^{{}}"] if spec.ref else ["HEAD"]), timeout=timeout)
    lines = [line.split("\t") for line in refs.splitlines() if "\t" in line]
    if not lines:
        if spec.ref and len(spec.ref) >= 7 and all(c in "0123456789abcdef" for c in spec.ref.lower()):
            return None  # a commit id: not advertised by the remote; compare by prefix instead
        raise SourceError(f"ref {spec.ref!r} not found at {spec.source}")
    peeled = [sha for sha, name in lines if name.endswith("^{}")]  # annotated tag -> its commit
    return peeled[0] if peeled else lines[0][0]
