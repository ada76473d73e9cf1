"""Resources: the embedder, Chroma and the repository registry, configured from the
environment so the CLI, the UI and step processes agree (secrets through dg.EnvVar)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from .core import paths
from .core.embed.providers import Embedder, make_embedder
from .core.source.registry import RepoSpec, get_spec, load_registry
from .core.index.chroma import CHROMA_TOKEN_ENV, ChromaSettings, chroma_settings_from_env, open_client


class EmbedderResource(dg.ConfigurableResource):
    provider: str = Field(
        default="auto",
        description="'openai' (any OpenAI-compatible server), 'local' (all-MiniLM-L6-v2, offline) or "
        "'auto': openai when OPENAI_API_KEY is set, else local.",
    )
    model: Optional[str] = Field(default=None, description="Default: text-embedding-3-small (openai).")
    api_key: Optional[str] = Field(default=None, description="OpenAI API key (set through an EnvVar).")
    base_url: Optional[str] = Field(default=None, description="OpenAI-compatible server URL; default OPENAI_BASE_URL.")
    dimensions: Optional[int] = Field(default=None, description="Shortened vectors (text-embedding-3 only).")
    device: Optional[str] = Field(default=None, description="Local model device; default cuda when present.")

    def build(self) -> Embedder:
        return make_embedder(self.provider, self.model, self.api_key, self.base_url, self.dimensions, self.device)


class ChromaResource(dg.ConfigurableResource):
    mode: str = Field(default="embedded", description="'embedded' (PersistentClient) or 'server' (HttpClient).")
    path: str = Field(default="", description="Embedded mode folder; default .data/chroma.")
    host: str = "127.0.0.1"
    port: int = 8000
    ssl: bool = False
    token: Optional[str] = Field(default=None, description="Server auth token (set through an EnvVar).")
    collection_prefix: str = "repo_index-"

    def settings(self) -> ChromaSettings:
        return ChromaSettings(self.mode, self.path or str(paths.data_dir() / "chroma"), self.host, self.port,
                              self.ssl, self.token, self.collection_prefix)

    def client(self):
        return open_client(self.settings())


class RegistryResource(dg.ConfigurableResource):
    path: str = Field(default="", description="repositories.yaml; default REPO_INDEX_REGISTRY or the project root.")

    def file(self) -> Path:
        return Path(self.path) if self.path else paths.registry_path()

    def specs(self) -> list[RepoSpec]:
        return load_registry(self.file())

    def spec(self, name: str) -> RepoSpec:
        return get_spec(self.specs(), name)


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _secret(name: str):
    # dg.EnvVar keeps the value out of the UI and run config; it must exist to be used.
    return dg.EnvVar(name) if os.environ.get(name) else None


def default_resources() -> dict:
    chroma = chroma_settings_from_env()
    return {
        "embedder": EmbedderResource(
            provider=_env("REPO_INDEX_EMBEDDER", "auto"),
            model=os.environ.get("REPO_INDEX_EMBEDDING_MODEL") or None,
            api_key=_secret("OPENAI_API_KEY"),
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            dimensions=int(os.environ["REPO_INDEX_EMBEDDING_DIMENSIONS"]) if os.environ.get("REPO_INDEX_EMBEDDING_DIMENSIONS") else None,
        ),
        "chroma": ChromaResource(
            mode=chroma.mode, path=chroma.path, host=chroma.host, port=chroma.port, ssl=chroma.ssl,
            token=_secret(CHROMA_TOKEN_ENV), collection_prefix=chroma.collection_prefix,
        ),
        "registry": RegistryResource(path=_env(paths.REGISTRY_ENV, "")),
    }
