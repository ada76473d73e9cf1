"""Sources: a local directory is read in place; a git URL is cloned once into a cache
folder and fetched on later runs, then checked out (detached) at the requested ref.

Git runs without hooks, without prompts, with a timeout that kills the whole process
group (a hung ssh or https helper included), only over https, ssh and local files (never
`ext::` or other helper transports, never into submodules), and never with a URL that
could be read as an option (`--` separates it), so an untrusted registry entry cannot run
commands here.

Nor can a folder we did not make: git runs in a fresh empty directory of ours (ls-remote,
clone), in our clone, or in the registered folder itself (its HEAD), and never looks for a
repository above that directory. The caller's working directory may be anyone's download,
whose .git/config could rewrite our URLs (`url.*.insteadOf`) or name commands
(`credential.helper = !cmd`, `remote.<url>.uploadpack`); git never reads it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ..settings import child_environment
from .registry import RegistryError, RepoSpec, resolve_local_source, validate_name

GIT_TIMEOUT_S = 600  # read at call time, so tests and callers may lower it

# Given on every command line, so they override any system, user or repository config.
# The only repository config git reads is our clone's (written by git clone) or a
# registered folder's, where we only ask `rev-parse` for HEAD: these close what that could
# still start. The user's global and the system config are read as usual: they are the
# user's and the administrator's own choices (credential helpers for private clones,
# insteadOf mirrors, proxies), the same git would use on the command line.
_GIT_CONFIG = {
    "core.hooksPath": "/dev/null",  # no hook of any repository runs
    "core.fsmonitor": "false",  # a local repository's config cannot name a command to run
    "protocol.allow": "never",  # transports: only those below
    "protocol.https.allow": "always",
    "protocol.ssh.allow": "always",
    "protocol.file.allow": "user",  # local paths we were given, not ones a submodule names
    "submodule.recurse": "false",
    "advice.detachedHead": "false",
}


class SourceError(RuntimeError):
    """The repository's source cannot be read; the message names the entry and the fix."""


@dataclass(frozen=True)
class SourceTree:
    root: Path
    commit: str | None  # None for a local directory that is not a git work tree
    kind: str  # "local" or "git"


# What `git rev-parse --local-env-vars` lists (as git itself unsets them before working in
# another repository), plus namespaces and hook quarantine: variables that point git at a
# repository, work tree, index or config other than the one we name. A hook of the user's
# repository that runs `repo-index index` has GIT_DIR and GIT_WORK_TREE set: left in, our
# checkout would move the user's HEAD and overwrite their index.
_REDIRECTING_ENV = frozenset({
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY", "GIT_DIR", "GIT_WORK_TREE", "GIT_IMPLICIT_WORK_TREE", "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE", "GIT_NO_REPLACE_OBJECTS", "GIT_REPLACE_REF_BASE", "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX", "GIT_SHALLOW_FILE", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_QUARANTINE_PATH",
})


def _git_env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in child_environment().items()
           if k not in _REDIRECTING_ENV and not k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", SSH_ASKPASS="true", GIT_LFS_SKIP_SMUDGE="1",
               # The repository git works on is the one in `cwd` or none: never one above it
               # (a folder inside someone's repository, a clone whose .git is gone).
               GIT_CEILING_DIRECTORIES=str(Path(os.path.realpath(cwd)).parent))
    if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"  # fail rather than wait for a passphrase
    return env


def git(*args: str, cwd: Path | None = None, timeout: float | None = None) -> str:
    """Run git in `cwd`, or (None) in a new empty directory of ours: never in the caller's
    working directory, whose repository config git would otherwise read. Its output as
    text, stripped."""
    return git_bytes(*args, cwd=cwd, timeout=timeout).decode("utf-8", "replace").strip()


def git_bytes(*args: str, cwd: Path | None = None, timeout: float | None = None) -> bytes:
    """`git` giving the output's bytes as they are (a file's content)."""
    if cwd is None:
        with tempfile.TemporaryDirectory(prefix="repo-index-git-") as empty:  # mode 0700: nobody else's
            return git_bytes(*args, cwd=Path(empty), timeout=timeout)
    timeout = GIT_TIMEOUT_S if timeout is None else timeout
    cmd = ["git", *(arg for k, v in _GIT_CONFIG.items() for arg in ("-c", f"{k}={v}")), *args]
    # Its own process group, so a timeout kills ssh or git-remote-https too: killing git
    # alone would leave them running, connected, for as long as the remote keeps them.
    proc = subprocess.Popen(cmd, cwd=cwd, env=_git_env(cwd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        raise SourceError(f"git {args[0]} timed out after {timeout:.0f}s") from exc
    except BaseException:  # interrupted: leave nothing running
        _kill_group(proc)
        raise
    if proc.returncode != 0:
        raise SourceError(f"git {args[0]} failed: {err.decode('utf-8', 'replace').strip()[-500:]}")
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def local_commit(root: Path) -> str | None:
    """HEAD of a registered folder that is itself the top of a git work tree; None for any
    other folder (one inside another repository says nothing by that repository's HEAD:
    it is identified by its content instead, see snapshot.current_version)."""
    try:
        top = git("rev-parse", "--show-toplevel", cwd=root, timeout=30)
        if Path(top).resolve() != root.resolve():
            return None
        return git("rev-parse", "--verify", "HEAD", cwd=root, timeout=30)
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
    try:
        return cache_dir / validate_name(spec.name)  # a slug: never a path out of the cache
    except RegistryError as exc:
        raise SourceError(str(exc)) from exc


def _git_url(spec: RepoSpec, registry_file: Path) -> str:
    if spec.is_git_url:
        return spec.source
    # A local path with a ref is read as a git repository at that ref, through a clone.
    return resolve_local_source(spec, registry_file).as_uri()


def _clone_or_fetch(spec: RepoSpec, registry_file: Path, cache_dir: Path) -> Path:
    """Our clone of `spec`, made or brought up to date with its remote."""
    url = _git_url(spec, registry_file)
    clone = clone_path(spec, cache_dir)
    if clone.exists() and not _clone_of(clone, url):  # the entry now points elsewhere: start over
        shutil.rmtree(clone)
    if not clone.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Upper case: no repository name (a lowercase slug) is this, so this never deletes another's clone.
        partial = clone.with_name(clone.name + ".PARTIAL")
        shutil.rmtree(partial, ignore_errors=True)
        git("clone", "--quiet", "--no-checkout", "--", url, os.path.abspath(partial))  # git runs elsewhere
        partial.rename(clone)
    else:
        git("fetch", "--quiet", "--prune", "--tags", "--force", "origin", cwd=clone)
        git("remote", "set-head", "origin", "--auto", cwd=clone, timeout=60)
    return clone


def _clone_of(clone: Path, url: str) -> bool:
    """Whether `clone` is a working clone of `url`."""
    try:
        return git("remote", "get-url", "origin", cwd=clone, timeout=30) == url
    except SourceError:
        return False


def _check_out(clone: Path, commit: str) -> None:
    git("checkout", "--quiet", "--force", "--detach", commit, cwd=clone)
    git("clean", "-q", "-ffdx", cwd=clone)


def fetch_git(spec: RepoSpec, registry_file: Path, cache_dir: Path) -> SourceTree:
    clone = _clone_or_fetch(spec, registry_file, cache_dir)
    commit = _resolve_ref(clone, spec.ref)
    _check_out(clone, commit)
    return SourceTree(root=clone, commit=commit, kind="git")


def clone_with(spec: RepoSpec, registry_file: Path, cache_dir: Path, commit: str) -> Path:
    """This machine's clone of `spec`, holding `commit` (fetched only when it does not), its
    checkout untouched: what reads a file at a commit (`git cat-file`) needs, on a machine
    that has not indexed the repository (a search server, a cluster worker). One caller at
    a time per clone."""
    clone = clone_path(spec, cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _clone_lock(clone):
        return _clone_with(spec, registry_file, cache_dir, commit)[0]


def _clone_with(spec: RepoSpec, registry_file: Path, cache_dir: Path, commit: str) -> tuple[Path, bool]:
    """The clone holding `commit`, and whether it was just made or fetched."""
    clone = clone_path(spec, cache_dir)
    if clone.exists() and _clone_of(clone, _git_url(spec, registry_file)) and _has_commit(clone, commit):
        return clone, False
    clone = _clone_or_fetch(spec, registry_file, cache_dir)
    if not _has_commit(clone, commit):
        raise SourceError(f"commit {commit} of {spec.name!r} is no longer at {spec.source} (history rewritten "
                          "since it was indexed?); run the repository again")
    return clone, True


def checkout_commit(spec: RepoSpec, registry_file: Path, cache_dir: Path, commit: str) -> Path:
    """This machine's clone of `spec` checked out at `commit`, the one a run recorded: what
    a step reads when the run's first step may have run on another machine (a cluster
    worker), or this clone was left at another commit. Fetches only when the commit is not
    here; one caller at a time per clone (steps of one run may run side by side)."""
    clone = clone_path(spec, cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _clone_lock(clone):
        clone, fetched = _clone_with(spec, registry_file, cache_dir, commit)
        # A new clone has no checkout (`--no-checkout`), whatever its HEAD.
        if fetched or git("rev-parse", "HEAD", cwd=clone, timeout=30) != commit:
            _check_out(clone, commit)
    return clone


def _clone_lock(clone: Path) -> FileLock:
    return FileLock(str(clone.with_name(clone.name + ".LOCK")))  # upper case: no repository's name


def _has_commit(clone: Path, commit: str) -> bool:
    try:
        git("cat-file", "-e", f"{commit}^{{commit}}", cwd=clone, timeout=30)
        return True
    except SourceError:
        return False


def resolve_source(spec: RepoSpec, registry_file: Path, cache_dir: Path) -> SourceTree:
    """The working tree to index for `spec`, and the commit it is at."""
    try:
        if spec.is_git_url or spec.ref:
            return fetch_git(spec, registry_file, cache_dir)
        root = resolve_local_source(spec, registry_file)
        if not root.is_dir():
            raise SourceError(f"path {str(root)!r} does not exist or is not a directory")
        return SourceTree(root=root, commit=local_commit(root), kind="local")
    except SourceError as exc:
        raise SourceError(
            f"repository {spec.name!r} (source {spec.source!r}): {exc}. "
            "Fix the entry in the registry (`repo-index add {0} SOURCE --replace`) or the source.".format(spec.name)
        ) from exc


def current_head(spec: RepoSpec, registry_file: Path, timeout: float = 30) -> str | None:
    """The commit the source points at now, without fetching into the cache (None: a folder
    that is not a git root)."""
    if not spec.is_git_url and not spec.ref:
        root = resolve_local_source(spec, registry_file)
        return local_commit(root) if root.is_dir() else None
    url = _git_url(spec, registry_file)
    refs = git("ls-remote", "--", url, *([spec.ref, f"{spec.ref}^{{}}"] if spec.ref else ["HEAD"]), timeout=timeout)
    lines = [line.split("\t") for line in refs.splitlines() if "\t" in line]
    if not lines:
        if spec.ref and len(spec.ref) >= 7 and all(c in "0123456789abcdef" for c in spec.ref.lower()):
            return None  # a commit id: not advertised by the remote; compare by prefix instead
        raise SourceError(f"ref {spec.ref!r} not found at {spec.source}")
    peeled = [sha for sha, name in lines if name.endswith("^{}")]  # annotated tag -> its commit
    return peeled[0] if peeled else lines[0][0]
