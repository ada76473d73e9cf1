"""The rules files a tree carries: `.gitignore` and `.gitattributes` at every level, and
`.gitmodules`. Read from an untrusted tree: only small regular files are read."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pathspec

# .gitattributes attributes that mark a file as not worth indexing (GitHub Linguist's).
SKIP_ATTRIBUTES = ("linguist-generated", "linguist-vendored")
RULES_FILE_MAX_BYTES = 1_000_000  # a .gitignore, .gitattributes or .gitmodules larger is not read


def read_rules_file(path: Path) -> list[str]:
    """Lines of a small regular file; nothing for a missing, huge, linked or special one
    (a hostile tree may name a FIFO `.gitignore`, and reading it would block forever)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > RULES_FILE_MAX_BYTES:
            return []
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def ignored(rules: list[tuple[str, pathspec.PathSpec]], rel: str, is_dir: bool) -> bool:
    """gitignore semantics: the deepest .gitignore with a matching rule decides."""
    verdict = False
    for base, spec in rules:
        sub = rel[len(base) + 1:] if base else rel
        result = spec.check_file(sub + "/" if is_dir else sub)
        if result.include is not None:
            verdict = result.include
    return verdict


AttributeRule = tuple[pathspec.Pattern, dict[str, bool]]


def parse_gitattributes(lines: list[str]) -> list[AttributeRule]:
    """The SKIP_ATTRIBUTES settings of a .gitattributes file, as (pattern, {attribute: set?}).

    `attr`, `attr=true` set; `-attr`, `attr=false` and `!attr` unset. As in git, negated
    patterns are invalid, and a pattern matches files only, never a folder's contents (so
    `dir/` matches nothing and `dir/**` is the way to mark a folder).
    """
    rules = []
    for line in lines:
        fields = line.split()
        if not fields or fields[0].startswith(("#", "!")) or fields[0].endswith("/"):
            continue
        values = {}
        for attr in fields[1:]:
            name, _, value = attr.lstrip("-!").partition("=")
            if name in SKIP_ATTRIBUTES:
                values[name] = not attr.startswith(("-", "!")) and value.lower() not in ("false", "0", "no")
        if values:
            rules.append((pathspec.GitIgnoreSpec.from_lines([fields[0]]).patterns[0], values))
    return rules


def skip_attribute(rules: list[tuple[str, list[AttributeRule]]], rel: str) -> str | None:
    """The SKIP_ATTRIBUTES set on `rel`: deeper files and later lines take precedence."""
    values: dict[str, bool] = {}
    for base, file_rules in rules:
        sub = rel[len(base) + 1:] if base else rel
        for pattern, setting in file_rules:
            found = pattern.match_file(sub)
            # A gitignore pattern also matches what is inside a matching folder; git's
            # attribute patterns do not.
            if found is not None and not found.match.groupdict().get("ps_d"):
                values.update(setting)
    return next((name for name in SKIP_ATTRIBUTES if values.get(name)), None)


def submodule_paths(root: Path) -> set[str]:
    """Paths of the submodules declared in `root/.gitmodules` (a clone leaves them empty)."""
    paths = set()
    for line in read_rules_file(root / ".gitmodules"):
        m = re.match(r"\s*path\s*=\s*(.+?)\s*$", line)
        if m:
            paths.add(m.group(1).strip('"').strip("/"))
    return paths


@dataclass
class FolderRules:
    ignore: list[tuple[str, pathspec.PathSpec]]
    attributes: list[tuple[str, list[AttributeRule]]]


def rules_for(here: Path, rel_dir: str, parent: FolderRules) -> FolderRules:
    ignore, attributes = parent.ignore, parent.attributes
    spec = pathspec.GitIgnoreSpec.from_lines(read_rules_file(here / ".gitignore"))
    if spec.patterns:
        ignore = [*ignore, (rel_dir, spec)]
    attr = parse_gitattributes(read_rules_file(here / ".gitattributes"))
    if attr:
        attributes = [*attributes, (rel_dir, attr)]
    return FolderRules(ignore, attributes)
