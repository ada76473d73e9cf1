"""Walk a working tree and decide, for every file, whether it is indexed or why not.

Every file ends either as a FileRecord or counted under a skip reason; directories that
are pruned wholesale (`.git`, `node_modules`, ignored folders) are counted too. Ignore
rules are `.gitignore` files at every level (gitignore semantics from `pathspec`), the
registry entry's include/exclude globs, and the default excludes below.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from .languages import detect_language

DEFAULT_MAX_FILE_BYTES = 1_000_000

# Folders nobody wants in a code index: VCS metadata, dependencies, caches, build output.
DEFAULT_EXCLUDED_DIRS = frozenset({
    ".git", ".hg", ".svn", "node_modules", "vendor", "bower_components", "__pycache__",
    ".venv", "venv", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    ".hypothesis", ".idea", ".vscode", ".gradle", ".terraform", ".next", ".nuxt",
    "site-packages", "dist", "build", "target", ".eggs",
})

# Files that commonly hold credentials never leave the machine.
SECRET_FILE_PATTERNS = pathspec.PathSpec.from_lines("gitwildmatch", [
    ".env", ".env.*", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc", ".pgpass", ".npmrc",
    ".pypirc", "credentials", "credentials.json", ".aws/credentials", ".docker/config.json",
    "*.kdbx", "secrets.y*ml", "service-account*.json",
])

GENERATED_FILE_PATTERNS = pathspec.PathSpec.from_lines("gitwildmatch", [
    "*.min.js", "*.min.css", "*.min.*", "*.map", "package-lock.json", "yarn.lock",
    "pnpm-lock.yaml", "poetry.lock", "Cargo.lock", "Gemfile.lock", "composer.lock",
    "go.sum", "uv.lock", "Pipfile.lock", "*.pb.go", "*_pb2.py", "*.designer.cs",
])

BINARY_SNIFF_BYTES = 8192
MINIFIED_AVG_LINE = 300  # characters per line beyond which text is machine-written


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

    def skip(self, reason: str, path: str) -> None:
        self.skipped[reason] += 1
        examples = self.skipped_examples.setdefault(reason, [])
        if len(examples) < 5:
            examples.append(path)


def _load_gitignore(directory: Path, rel_dir: str) -> pathspec.PathSpec | None:
    try:
        lines = (directory / ".gitignore").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    return spec if spec.patterns else None


def _ignored(rules: list[tuple[str, pathspec.PathSpec]], rel: str, is_dir: bool) -> bool:
    """gitignore semantics: the deepest .gitignore with a matching rule decides."""
    verdict = False
    for base, spec in rules:
        sub = rel[len(base) + 1:] if base else rel
        result = spec.check_file(sub + "/" if is_dir else sub)
        if result.include is not None:
            verdict = result.include
    return verdict


def classify_bytes(data: bytes) -> str | None:
    """A skip reason for file content, or None when it is indexable text."""
    head = data[:BINARY_SNIFF_BYTES]
    if b"\x00" in head:
        return "binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    if not text.strip():
        return "empty"
    lines = text.count("\n") + 1
    if len(text) / lines > MINIFIED_AVG_LINE and len(text) > 4 * MINIFIED_AVG_LINE:
        return "minified_or_generated"
    return None


def decode_source(data: bytes) -> str:
    """UTF-8 text with any BOM dropped and CRLF / lone CR line ends made LF."""
    text = data.decode("utf-8-sig")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def discover(
    root: Path,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Discovery:
    """Every file under `root`, indexed or skipped with a reason; sorted by path."""
    root = root.resolve()
    include_spec = pathspec.PathSpec.from_lines("gitwildmatch", include) if include else None
    exclude_spec = pathspec.PathSpec.from_lines("gitwildmatch", exclude) if exclude else None
    out = Discovery()
    rules_by_dir: dict[str, list[tuple[str, pathspec.PathSpec]]] = {}

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        parent_rules = rules_by_dir.get(rel_dir.rsplit("/", 1)[0] if "/" in rel_dir else "", []) if rel_dir else []
        own = _load_gitignore(here, rel_dir)
        rules = [*parent_rules, (rel_dir, own)] if own else parent_rules
        rules_by_dir[rel_dir] = rules

        kept = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if d in DEFAULT_EXCLUDED_DIRS:
                out.pruned_dirs["default_excluded"] += 1
            elif os.path.islink(here / d):
                # Never follow a directory symlink: it may loop or leave the tree.
                out.skip("symlink", rel)
            elif _ignored(rules, rel, is_dir=True):
                out.pruned_dirs["gitignored"] += 1
            elif exclude_spec and exclude_spec.match_file(rel + "/"):
                out.pruned_dirs["excluded"] += 1
            else:
                kept.append(d)
        dirnames[:] = kept

        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            record = _classify_file(here / name, rel, root, rules, include_spec, exclude_spec, max_file_bytes, out)
            if record:
                out.files.append(record)

    out.files.sort(key=lambda f: f.path)
    return out


def _classify_file(path, rel, root, rules, include_spec, exclude_spec, max_file_bytes, out) -> FileRecord | None:
    if "\n" in rel or "\r" in rel:
        out.skip("unsupported_name", rel)
        return None
    if _ignored(rules, rel, is_dir=False):
        out.skip("gitignored", rel)
        return None
    if exclude_spec and exclude_spec.match_file(rel):
        out.skip("excluded", rel)
        return None
    if include_spec and not include_spec.match_file(rel):
        out.skip("not_included", rel)
        return None
    if SECRET_FILE_PATTERNS.match_file(rel):
        out.skip("secret_looking", rel)
        return None
    if GENERATED_FILE_PATTERNS.match_file(rel):
        out.skip("minified_or_generated", rel)
        return None
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            target = path.resolve()
            if not target.is_relative_to(root) or not target.is_file():
                out.skip("symlink_outside_tree", rel)
                return None
            st = os.stat(target)
        if not stat.S_ISREG(st.st_mode):
            out.skip("not_regular_file", rel)
            return None
        if st.st_size > max_file_bytes:
            out.skip("too_large", rel)
            return None
        with open(path, "rb") as fh:
            data = fh.read(max_file_bytes + 1)
    except OSError:
        out.skip("unreadable", rel)
        return None
    reason = classify_bytes(data)
    if reason:
        out.skip(reason, rel)
        return None
    return FileRecord(
        path=rel,
        language=detect_language(rel, data[:256]),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
