"""The repository registry: `repositories.yaml` -> RepoSpec entries.

A name becomes a Dagster partition key and part of a Chroma collection name, so it is a
strict slug. Structural errors (bad name, duplicate, unknown field, bad URL) fail the
whole file with a message naming the entry; whether a local path exists is checked per
repository when its source is resolved, so one missing checkout fails only its partition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from ..atomic_files import atomic_writer

# Lowercase slug; ends alphanumeric and has no "..": Chroma collection names require both.
# Always fullmatch: `$` would also match before a trailing newline.
NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$")
_GIT_URL_RE = re.compile(r"^(https://|ssh://|file://)\S+$|^[\w.-]+@[\w.-]+:\S+$")
_FIELDS = {"name", "source", "ref", "include", "exclude"}
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# A branch, tag or commit: what git check-ref-format allows, minus option-like starts.
_REF_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*@\{)[^\s~^:?*\[\\\x00-\x1f\x7f]+$")


class _RegistryLoader(yaml.SafeLoader):
    """YAML as the registry needs it: every scalar a string (`ref: 0123456` is not octal,
    `ref: 2024-01-01` not a date; only an empty value is null), no aliases (an alias bomb
    of a few hundred bytes expands to gigabytes), no duplicate keys (YAML would keep the
    last one silently)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in the registry",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_RegistryLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


class RegistryError(ValueError):
    """A registry entry is invalid; the message names the entry and the fix."""


@dataclass(frozen=True)
class RepoSpec:
    name: str
    source: str
    ref: str | None = None
    include: tuple[str, ...] = field(default_factory=tuple)
    exclude: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_git_url(self) -> bool:
        return is_git_url(self.source)

    def to_yaml(self) -> dict:
        entry: dict = {"name": self.name, "source": self.source}
        if self.ref:
            entry["ref"] = self.ref
        if self.include:
            entry["include"] = list(self.include)
        if self.exclude:
            entry["exclude"] = list(self.exclude)
        return entry


def is_git_url(source: str) -> bool:
    return bool(_GIT_URL_RE.fullmatch(source))


def validate_name(name: object, where: str = "") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise RegistryError(
            f"{where}invalid repository name {name!r}: use 1-63 lowercase letters, digits, "
            "'.', '_' or '-', starting and ending with a letter or digit (e.g. 'my-service')"
        )
    return name


def validate_source(source: object, where: str = "") -> str:
    """A local path or a plain git URL; anything git could read as an option, a command or
    a credential to store is refused."""
    if not isinstance(source, str) or not source.strip():
        raise RegistryError(f"{where}'source' must be a local path or a git URL")
    if _CONTROL_RE.search(source):
        raise RegistryError(f"{where}refusing source {source!r}: it contains control characters")
    if source.startswith("-") or "::" in source.split("/", 1)[0]:
        # Option-like or helper-transport URLs (`--upload-pack=…`, `ext::…`) run commands.
        raise RegistryError(f"{where}refusing source {source!r}: not a path or a plain git URL")
    if "://" in source and not is_git_url(source):
        raise RegistryError(
            f"{where}unsupported URL {source!r}: use https://, ssh://, git@host:path, "
            "file:// or a local path"
        )
    if is_git_url(source):
        _check_url_parts(source, where)
    return source


def _check_url_parts(url: str, where: str) -> None:
    if "://" in url:
        parts = urlsplit(url)
        host, userinfo = parts.hostname or "", parts.netloc.rpartition("@")[0]
        if url.startswith("https://") and userinfo:
            # It would be stored in the registry, the run metadata and the logs.
            raise RegistryError(
                f"{where}refusing a credential in the URL of {parts.scheme}://{parts.hostname}/…: "
                "use a git credential helper or an SSH key instead")
    else:  # scp-like user@host:path
        host = url.split("@", 1)[1].split(":", 1)[0]
    if host.startswith("-"):
        raise RegistryError(f"{where}refusing source {url!r}: a host cannot start with '-'")


def _globs(value: object, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(g, str) and g for g in value):
        raise RegistryError(f"{where}'{key}' must be a list of glob patterns")
    return tuple(value)


def parse_entry(entry: object, index: int = 0) -> RepoSpec:
    where = f"repositories[{index}]: "
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}each entry must be a mapping with 'name' and 'source'")
    if "name" in entry:
        where = f"repository {entry['name']!r}: "
    unknown = set(entry) - _FIELDS
    if unknown:
        raise RegistryError(f"{where}unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    if "name" not in entry or "source" not in entry:
        raise RegistryError(f"{where}'name' and 'source' are required")
    ref = entry.get("ref")
    if ref is not None and (not isinstance(ref, str) or not _REF_RE.fullmatch(ref)):
        raise RegistryError(f"{where}'ref' must be a branch, tag or commit (got {ref!r})")
    return RepoSpec(
        name=validate_name(entry["name"], where),
        source=validate_source(str(entry["source"]), where),
        ref=ref,
        include=_globs(entry.get("include"), "include", where),
        exclude=_globs(entry.get("exclude"), "exclude", where),
    )


def parse_registry(data: object, origin: str = "repositories.yaml") -> list[RepoSpec]:
    if data is None:
        return []
    entries = data.get("repositories") if isinstance(data, dict) else None
    if entries is None and isinstance(data, dict) and set(data) <= {"repositories"}:
        return []
    if not isinstance(entries, list):
        raise RegistryError(f"{origin}: expected a top-level 'repositories:' list")
    specs = [parse_entry(e, i) for i, e in enumerate(entries)]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise RegistryError(f"{origin}: duplicate repository name {spec.name!r}; names must be unique")
        seen.add(spec.name)
    return specs


class RegistryNotStated(RegistryError):
    """The registry file is missing, unreadable or says nothing: no evidence that the
    repositories it used to list are gone (an explicit `repositories: []` is)."""


def load_registry(path: Path, stated: bool = False) -> list[RepoSpec]:
    """All entries of the registry file. A missing or empty file is an empty registry for
    the commands that edit or list it; with `stated`, what removes partitions must be an
    explicit list (`repositories: []` included), anything else raises RegistryNotStated."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if stated:
            raise RegistryNotStated(f"{path} does not exist") from None
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryNotStated(f"{path} cannot be read: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_RegistryLoader)  # noqa: S506 - a SafeLoader, stricter
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from exc
    if stated and not (isinstance(data, dict) and isinstance(data.get("repositories"), list)):
        if data is None or (isinstance(data, dict) and data.get("repositories") is None):
            raise RegistryNotStated(f"{path} lists no repositories (write `repositories: []` to mean none)")
    return parse_registry(data, str(path))


def save_registry(path: Path, specs: list[RepoSpec]) -> None:
    """Write atomically so a reader (the sensor, a step) never sees half a file."""
    text = yaml.safe_dump({"repositories": [s.to_yaml() for s in specs]}, sort_keys=False)
    with atomic_writer(path) as fh:
        fh.write(text.encode("utf-8"))


def get_spec(specs: list[RepoSpec], name: str) -> RepoSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in specs) or "none"
    raise RegistryError(f"repository {name!r} is not registered (registered: {known}); add it with `repo-index add`")


def resolve_local_source(spec: RepoSpec, registry_file: Path) -> Path:
    """A local source path, relative paths taken from the registry file's folder."""
    path = Path(spec.source).expanduser()
    if not path.is_absolute():
        path = registry_file.parent / path
    return path.resolve()


def add_spec(specs: list[RepoSpec], spec: RepoSpec, replace: bool = False) -> list[RepoSpec]:
    if any(s.name == spec.name for s in specs):
        if not replace:
            raise RegistryError(f"repository {spec.name!r} is already registered; remove it first or pass --replace")
        return [spec if s.name == spec.name else s for s in specs]
    return [*specs, spec]


def remove_spec(specs: list[RepoSpec], name: str) -> list[RepoSpec]:
    get_spec(specs, name)
    return [s for s in specs if s.name != name]
