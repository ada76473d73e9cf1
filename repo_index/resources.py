"""Resources: the embedding model, Chroma, the registry, the vector cache, the chunk store
and the per-repository run lease, configured from the one `Settings` read from the environment, so the CLI, the UI
and step processes agree. Secrets never enter Dagster's config: the OpenAI key and the
Chroma token are read where they are used."""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from .core.chunk.table import ChunkStore
from .core.embed.cache import CacheStore, open_vector_cache
from .core.embed.model import EmbeddingModel, resolve_model
from .core.embed.providers import Embedder, make_embedder
from .core.index.client import ChromaSettings, open_client
from .core.run_lease import LeaseBusy, RepositoryLease
from .core.settings import Settings, get_settings
from .core.source.git import checkout_commit
from .core.source.registry import RepoSpec, get_spec, load_registry


class EmbedderResource(dg.ConfigurableResource):
    """The embedding model of a run: every field left unset comes from the environment's
    settings (REPO_INDEX_EMBEDDER, REPO_INDEX_EMBEDDING_MODEL, REPO_INDEX_LOCAL_MODEL, ...), read in the step's
    process. Set `model` (and `dimensions`) in the launchpad's resources section to index
    one run with another model: chunking, embedding and the checks all use what
    `resolve()` answers. The API key never enters Dagster's config: it is read from
    OPENAI_API_KEY where it is used."""

    provider: Optional[str] = Field(
        default=None,
        description="'openai' (any OpenAI-compatible server), 'local' (a sentence-transformers model on this "
        "machine, offline) or 'auto': openai when OPENAI_API_KEY is set, else local. Default: REPO_INDEX_EMBEDDER.",
    )
    model: Optional[str] = Field(default=None, description="openai: default REPO_INDEX_EMBEDDING_MODEL, else "
                                 "text-embedding-3-small. local: a hub id in the Hugging Face cache or a model "
                                 "folder; default REPO_INDEX_LOCAL_MODEL, else the bundled all-MiniLM-L6-v2.")
    base_url: Optional[str] = Field(default=None, description="OpenAI-compatible server URL; default "
                                    "OPENAI_BASE_URL, else OpenAI.")
    dimensions: Optional[int] = Field(
        default=None, description="Shortened vectors (text-embedding-3), or the vector size of a model served "
        "by an OpenAI-compatible server that repo_index does not know. Default: REPO_INDEX_EMBEDDING_DIMENSIONS.")
    device: Optional[str] = Field(default=None, description="Local model device; default cuda when present.")
    query_prefix: Optional[str] = Field(default=None, description="Put before every query (\"\" for none). "
                                        "Default: REPO_INDEX_QUERY_PREFIX, else what the model declares or is "
                                        "known to want (e5, bge, nomic, jina code), else none.")
    document_prefix: Optional[str] = Field(default=None, description="Put before every chunk (\"\" for none); "
                                           "a change re-embeds. Default: REPO_INDEX_DOCUMENT_PREFIX, else as "
                                           "query_prefix.")

    def resolve(self) -> EmbeddingModel:
        settings = get_settings()
        has_key = settings.api_key() is not None
        provider = self.provider or settings.embedder
        if provider == "auto":
            provider = "openai" if has_key else "local"
        configured = settings.local_model if provider == "local" else settings.embedding_model
        return resolve_model(provider, self.model or configured, self.dimensions or settings.embedding_dimensions,
                             self.base_url or settings.openai_base_url, has_api_key=has_key,
                             query_prefix=_first_set(self.query_prefix, settings.query_prefix),
                             document_prefix=_first_set(self.document_prefix, settings.document_prefix))

    def build(self, model: EmbeddingModel, timeout_s: float = 60.0) -> Embedder:
        """The embedder of `model` (what `resolve()` answered)."""
        return make_embedder(model, get_settings().api_key(), timeout_s, self.device)


def _first_set(*values: str | None) -> str | None:
    """The first value that is set ("" is: it means no prefix)."""
    return next((v for v in values if v is not None), None)


class ChromaResource(dg.ConfigurableResource):
    """Where the collections live. Every field left unset comes from the settings
    (REPO_INDEX_CHROMA_*), in the step's process, so a launchpad override of one field keeps
    the others; the server token is read from CHROMA_AUTH_TOKEN, never from Dagster config."""

    mode: Optional[str] = Field(default=None, description="'embedded' (PersistentClient) or 'server' (HttpClient).")
    path: Optional[str] = Field(default=None, description="Embedded mode folder.")
    host: Optional[str] = None
    port: Optional[int] = None
    ssl: Optional[bool] = None
    collection_prefix: Optional[str] = None
    state_dir: Optional[str] = Field(default=None, description="Folder of each collection's ids and line spans "
                                     "left by a sync.")

    def settings(self) -> ChromaSettings:
        base = ChromaSettings.from_settings(get_settings())
        given = {k: v for k, v in self.model_dump().items() if v is not None}
        return dataclasses.replace(base, **given)

    def client(self):
        return open_client(self.settings())


class RegistryResource(dg.ConfigurableResource):
    path: str = Field(description="repositories.yaml")
    clones_dir: str = Field(description="Where git sources are cloned, one folder per repository.")

    def file(self) -> Path:
        return Path(self.path)

    def specs(self, stated: bool = False) -> list[RepoSpec]:
        """The entries; `stated`: only from a file that lists them (see load_registry)."""
        return load_registry(self.file(), stated)

    def spec(self, name: str) -> RepoSpec:
        return get_spec(self.specs(), name)

    def root_at(self, name: str, commit: str, root: str) -> str:
        """Where this process reads `name`'s files at `commit`, given where repo_files read
        them (`root`): a git source's clone on this machine, checked out at the commit if it
        is not (a cluster worker, or a clone another run moved); a folder in place."""
        spec = self.spec(name)
        if commit and (spec.is_git_url or spec.ref):
            return str(checkout_commit(spec, self.file(), Path(self.clones_dir), commit))
        return root


class VectorCacheResource(dg.ConfigurableResource):
    """The embedding cache every step shares (vectors by model, dimensions and text hash):
    the SQLite file at `path`, or with REPO_INDEX_CACHE_URL set the PostgreSQL cache every
    worker shares, its URL read in the step's process (never in config: run storage keeps it)."""

    path: str = Field(description="SQLite file of the embedding cache (unless REPO_INDEX_CACHE_URL is set).")

    def open(self) -> CacheStore:
        return open_vector_cache(get_settings(), self.path)


class ChunkStoreResource(dg.ConfigurableResource):
    """Each repository's stored chunk table: what the next reindex reuses."""

    folder: str = Field(description="Folder of the per-repository chunk tables.")

    def store(self) -> ChunkStore:
        return ChunkStore(Path(self.folder))


class RunLeaseResource(dg.ConfigurableResource):
    """One run per repository at a time (core/run_lease.py): every stage holds the
    repository's lease before it touches its state, waiting for another run's to end."""

    folder: str = Field(description="Folder of the per-repository lease files.")
    wait_s: float = Field(default=3600.0, description="How long a stage waits for another run of the same "
                          "repository to end before it fails.")

    def hold(self, context, repo: str) -> None:
        from .status import run_has_ended

        has_ended = run_has_ended(context.instance)
        # The process that runs the whole run: a step process's parent under the multiprocess
        # executor, this process when steps run in process.
        parent = multiprocessing.parent_process()
        try:
            RepositoryLease(Path(self.folder), repo).acquire(
                context.run_id, has_ended, self.wait_s,
                on_wait=lambda holder: context.log.info(f"waiting for run {holder} of {repo} to end"),
                worker_pid=parent.pid if parent is not None else None)
        except LeaseBusy as exc:
            raise dg.Failure(description=str(exc)) from exc

    def release(self, context, repo: str) -> None:
        RepositoryLease(Path(self.folder), repo).release(context.run_id)


def default_resources(settings: Settings) -> dict:
    return {
        "embedder": EmbedderResource(),  # from the settings, in each step's process
        "chroma": ChromaResource(),  # from the settings, in each step's process
        "registry": RegistryResource(path=str(settings.registry_path()), clones_dir=str(settings.clones_dir())),
        "vector_cache": VectorCacheResource(path=str(settings.embedding_cache_path())),
        "chunk_store": ChunkStoreResource(folder=str(settings.chunk_tables_dir())),
        "run_lease": RunLeaseResource(folder=str(settings.run_leases_dir())),
    }
