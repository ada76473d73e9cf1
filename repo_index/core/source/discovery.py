"""Walk a working tree and decide, for every file, whether it is indexed or why not.

The tree is untrusted: every file ends either as a FileRecord or counted under a skip
reason (with a few examples), and directories pruned wholesale (`.git`, `node_modules`,
submodules, ignored folders, unreadable ones) are counted the same way. Nothing is
followed out of the tree and nothing is read whole before its size is known.

Rules, in order: names that are not UTF-8 (they cannot be stored as text); `.gitignore`
files at every level (gitignore semantics from `pathspec`) and the registry entry's
include/exclude globs; files that usually hold credentials, and files and folders whose
name holds a secret (a token in a name would reach metadata, the chunk table and the
embedding requests' headers; examples of skipped paths are masked too); generated files,
by name and by `linguist-generated` / `linguist-vendored` in `.gitattributes` files at
every level;
symlinks (never indexed: a link inside the tree duplicates its target, which is indexed
under its own path, and a link out of it would leak); then the bytes: too large, binary,
Git LFS pointer, not UTF-8, empty, minified.

Names with spaces, unicode or even newlines are indexed: paths travel as JSON strings,
Chroma metadata and SQLite text, none of which care.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from ..chunk.languages import detect_language
from .content import classify_bytes
from .ignore_rules import FolderRules, ignored, rules_for, skip_attribute, submodule_paths
from .reading import FileSkipped, read_bounded, symlink_reason
from .secrets import holds_secret, mask
from .stat_cache import StatCache

DEFAULT_MAX_FILE_BYTES = 1_000_000
MAX_DIR_DEPTH = 100  # folders below this depth are pruned, counted as "too_deep"

# Folders nobody wants in a code index: VCS metadata, dependencies, caches, build output.
DEFAULT_EXCLUDED_DIRS = frozenset({
    ".git", ".hg", ".svn", "node_modules", "vendor", "bower_components", "__pycache__",
    ".venv", "venv", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    ".hypothesis", ".idea", ".vscode", ".gradle", ".terraform", ".next", ".nuxt",
    "site-packages", "dist", "build", "target", ".eggs",
})
DEFAULT_EXCLUDED_FILES = frozenset({".git"})  # a worktree's or submodule's pointer to its repository

# Files that commonly hold credentials never leave the machine. Without a slash a pattern
# matches at any depth; `**/` does the same for the ones that need their folder.
SECRET_FILE_PATTERNS = pathspec.GitIgnoreSpec.from_lines([
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p8", "*.p12", "*.pfx", "*.jks",
    "*.keystore", "*.ppk", "*.kdbx", "*.asc", "*.gpg", "secring.*",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    ".netrc", "_netrc", ".pgpass", ".npmrc", ".pypirc", ".git-credentials", ".htpasswd",
    ".dockercfg", "**/.docker/config.json", "**/.kube/config", "kubeconfig",
    "credentials", "credentials.json", "**/.aws/credentials", "**/.aws/config",
    "application_default_credentials.json", "service-account*.json", ".boto", ".s3cfg",
    "*.tfstate", "*.tfstate.*", "*.tfvars", "secrets.y*ml", "secrets.json",
])

GENERATED_FILE_PATTERNS = pathspec.GitIgnoreSpec.from_lines([
    "*.min.js", "*.min.css", "*.min.*", "*.map", "package-lock.json", "yarn.lock",
    "pnpm-lock.yaml", "poetry.lock", "Cargo.lock", "Gemfile.lock", "composer.lock",
    "go.sum", "uv.lock", "Pipfile.lock", "*.pb.go", "*_pb2.py", "*.designer.cs",
])


def _one_regex(spec: pathspec.PathSpec) -> re.Pattern:
    """The patterns of `spec` (no negations) as one regex: one search per path instead of one
    per pattern, which is most of discovery's time on a large tree."""
    if any(p.include is False for p in spec.patterns):
        raise ValueError("a negated pattern needs the whole spec's semantics")
    parts = [re.sub(r"\(\?P<\w+>", "(?:", p.regex.pattern) for p in spec.patterns if p.include]
    return re.compile("|".join(f"(?:{part})" for part in parts))


_SECRET_RE = _one_regex(SECRET_FILE_PATTERNS)
_GENERATED_RE = _one_regex(GENERATED_FILE_PATTERNS)



@dataclass(frozen=True, slots=True)
class FileRecord:
    path: str  # repo-relative, POSIX
    language: str
    size_bytes: int
    sha256: str


@dataclass
class Discovery:
    files: list[FileRecord] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> files
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    pruned_dirs: Counter = field(default_factory=Counter)  # reason -> directories
    pruned_examples: dict[str, list[str]] = field(default_factory=dict)
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES  # the bound applied: chunking reads the files with it too

    def skip(self, reason: str, path: str) -> None:
        self.skipped[reason] += 1
        _example(self.skipped_examples, reason, path)

    def prune(self, reason: str, path: str) -> None:
        self.pruned_dirs[reason] += 1
        _example(self.pruned_examples, reason, path)


def _example(examples: dict[str, list[str]], reason: str, path: str) -> None:
    items = examples.setdefault(reason, [])
    if len(items) < 5:
        items.append(mask(path))


# -- the walk ------------------------------------------------------------------------------


def _storable_name(rel: str) -> bool:
    # os.walk hands non-UTF-8 bytes over as surrogates, which no JSON, SQLite or Chroma
    # string can hold.
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def discover(
    root: Path,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    stats: StatCache | None = None,
) -> Discovery:
    """Every file under `root`, indexed or skipped with a reason; sorted by path. With
    `stats`, a file whose stamps match what it last held is not read again, and what every
    file holds is recorded there."""
    root = Path(os.path.realpath(root))
    include_spec = pathspec.GitIgnoreSpec.from_lines(include) if include else None
    exclude_spec = pathspec.GitIgnoreSpec.from_lines(exclude) if exclude else None
    submodules = submodule_paths(root)
    out = Discovery(max_file_bytes=max_file_bytes)
    rules_by_dir: dict[str, FolderRules] = {}

    def unreadable_dir(exc: OSError) -> None:  # os.walk would otherwise drop it silently
        out.prune("unreadable", Path(exc.filename).relative_to(root).as_posix() if exc.filename else "?")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable_dir, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        parent = rules_by_dir.get(rel_dir.rpartition("/")[0]) if rel_dir else None
        rules = rules_by_dir[rel_dir] = rules_for(here, rel_dir, parent or FolderRules([], []))

        kept = []
        too_deep = rel_dir.count("/") + 1 >= MAX_DIR_DEPTH if rel_dir else False
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if too_deep:  # os.walk recurses once per level: a hostile tree would exhaust the stack
                out.prune("too_deep", rel)
            elif d in DEFAULT_EXCLUDED_DIRS:
                out.prune("default_excluded", rel)
            elif holds_secret(d):
                out.prune("secret_in_name", rel)
            elif os.path.islink(here / d):
                # Never follow a directory symlink: it may loop or leave the tree.
                out.skip(symlink_reason(here / d, root), rel)
            elif rel in submodules or os.path.lexists(here / d / ".git"):
                out.prune("submodule", rel)  # another repository: index it on its own
            elif ignored(rules.ignore, rel, is_dir=True):
                out.prune("gitignored", rel)
            elif exclude_spec and exclude_spec.match_file(rel + "/"):
                out.prune("excluded", rel)
            else:
                kept.append(d)
        dirnames[:] = kept

        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            reason = _name_reason(name, rel, rules, include_spec, exclude_spec)
            if reason:
                out.skip(reason, rel)
                continue
            record = _read_file(here / name, rel, root, max_file_bytes, out, stats)
            if record:
                out.files.append(record)

    out.files.sort(key=lambda f: f.path)
    return out


def _name_reason(name: str, rel: str, rules: FolderRules, include_spec, exclude_spec) -> str | None:
    """Why `rel` is skipped by its name alone, or None."""
    if not _storable_name(rel):
        return "unsupported_name"
    if name in DEFAULT_EXCLUDED_FILES:
        return "default_excluded"
    if ignored(rules.ignore, rel, is_dir=False):
        return "gitignored"
    if exclude_spec and exclude_spec.match_file(rel):
        return "excluded"
    if include_spec and not include_spec.match_file(rel):
        return "not_included"
    if _SECRET_RE.search(rel):
        return "secret_looking"
    if holds_secret(name):
        return "secret_in_name"
    if _GENERATED_RE.search(rel):
        return "minified_or_generated"
    attribute = skip_attribute(rules.attributes, rel) if rules.attributes else None
    return attribute.replace("-", "_") if attribute else None


def _read_file(path: Path, rel: str, root: Path, max_file_bytes: int, out: Discovery,
               stats: StatCache | None = None) -> FileRecord | None:
    """The record of a regular file within the size limit, or None with the skip counted."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            out.skip(symlink_reason(path, root), rel)
            return None
        if not stat.S_ISREG(st.st_mode):  # FIFOs, sockets, devices: reading may block
            out.skip("not_regular_file", rel)
            return None
        if st.st_size > max_file_bytes:  # known from the inode: the content is never read
            out.skip("too_large", rel)
            return None
        outcome = stats.known(rel, st) if stats is not None else None
        if outcome is not None:
            stats.record(rel, st, outcome)
            if isinstance(outcome, str):
                out.skip(outcome, rel)
                return None
            return outcome
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            data = read_bounded(fd, max_file_bytes)  # what was opened is checked again: it may have changed
        finally:
            os.close(fd)
    except FileSkipped as exc:
        out.skip(exc.reason, rel)
        return None
    except OSError:
        out.skip("unreadable", rel)
        return None
    reason = classify_bytes(data)
    record = None if reason else FileRecord(
        path=rel,
        language=detect_language(rel, data[:256]),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    if stats is not None:
        stats.record(rel, st, reason or record)
    if reason:
        out.skip(reason, rel)
    return record
