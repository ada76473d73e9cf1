"""The lines of an indexed file as the index saw them: read from git at the commit the
collection holds, so a hit's line numbers point at the right code even after the source
has moved on. A local folder that is not a git root keeps no history: its file is read as
it is now, and the answer says so.

Only paths the caller has checked are in the index are read (the search server does),
through `git cat-file` (no filters, no textconv: nothing of the repository's runs) or
through `read_beneath` (never a symlink, never outside the folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .git import SourceError, clone_with, git, git_bytes
from .reading import FileSkipped, read_beneath
from .registry import RepoSpec, resolve_local_source

MAX_LINES = 1000  # per answer: an agent pages through a longer file
MAX_FILE_BYTES = 16 * 1024 * 1024


class CodeUnavailable(RuntimeError):
    """The lines cannot be read; the message says why."""


@dataclass(frozen=True)
class CodeLines:
    path: str
    start_line: int
    end_line: int  # the last line given (<= total_lines)
    total_lines: int
    text: str
    commit: str  # what the lines are read at: the indexed commit, or "" for a folder as it is now
    exact: bool  # True: the lines are those the index holds; False: the file as it is now
    note: str = ""


def valid_path(path: str) -> str:
    """`path` if it is a relative POSIX path inside a tree; CodeUnavailable otherwise."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or "\0" in path or any(p in ("", ".", "..") for p in parts):
        raise CodeUnavailable(f"{path!r} is not a path inside the repository (use the path a hit gives)")
    return path


def indexed_lines(spec: RepoSpec, registry_file: Path, clones_dir: Path, commit: str, path: str,
                  start_line: int = 1, end_line: int | None = None, unchanged: bool = False) -> CodeLines:
    """Lines `start_line`..`end_line` (1-based, inclusive; at most MAX_LINES) of `path` in
    `spec`'s source at `commit` (the collection's indexed commit; a `tree:` fingerprint
    for a local folder that is not a git root). `unchanged`: the caller knows the folder
    still holds what was indexed (its fingerprint now is `commit`), so its lines are exact."""
    valid_path(path)
    if start_line < 1 or (end_line is not None and end_line < start_line):
        raise CodeUnavailable(f"bad line range {start_line}-{end_line}: lines are numbered from 1")
    if commit and not commit.startswith("tree:"):
        if spec.is_git_url or spec.ref:  # a machine that never indexed it (a server, a cluster) clones it now
            try:
                where = clone_with(spec, registry_file, clones_dir, commit)
            except SourceError as exc:
                raise CodeUnavailable(f"the source of {spec.name!r} at {commit[:12]} cannot be fetched: {exc}") from None
        else:
            where = resolve_local_source(spec, registry_file)
        if not where.is_dir():
            raise CodeUnavailable(f"the source of {spec.name!r} is not on this machine ({where})")
        data = _blob(where, commit, path)
        exact, note, at = True, "", commit
    else:
        root = resolve_local_source(spec, registry_file)
        try:
            data = read_beneath(root, path, MAX_FILE_BYTES)
        except FileSkipped as exc:
            raise CodeUnavailable(f"{path} cannot be read in {root}: {exc}") from None
        exact, at = unchanged, commit if unchanged else ""
        note = "" if unchanged else "a local folder keeps no history: these are the file's lines as they are now"
    lines = data.decode("utf-8", "replace").splitlines()
    total = len(lines)
    if start_line > max(total, 1):
        raise CodeUnavailable(f"{path} has {total} lines; line {start_line} is past its end")
    last = min(total, end_line or total, start_line + MAX_LINES - 1)
    if end_line and end_line > last and last - start_line + 1 == MAX_LINES:
        note = (note + "; " if note else "") + f"cut at {MAX_LINES} lines: ask again from line {last + 1}"
    return CodeLines(path, start_line, last, total, "\n".join(lines[start_line - 1:last]), at, exact, note)


def _blob(where: Path, commit: str, path: str) -> bytes:
    spec = f"{commit}:{path}"
    try:
        size = int(git("cat-file", "-s", spec, cwd=where, timeout=30))
    except (SourceError, ValueError):
        raise CodeUnavailable(f"{path} is not in commit {commit[:12]} of {where}") from None
    if size > MAX_FILE_BYTES:
        raise CodeUnavailable(f"{path} is {size} bytes at {commit[:12]}: larger than any file the index reads")
    return git_bytes("cat-file", "blob", spec, cwd=where, timeout=60)
