"""Which cache a process opens: the one place that decides (from the settings).

`REPO_INDEX_CACHE_URL` set: the PostgreSQL cache every worker of a cluster shares. Unset:
the SQLite file in the data folder (one machine). The URL is read here, in the process
that opens the cache, never passed through Dagster's config (stored in run storage).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .vectors import CacheStore

if TYPE_CHECKING:
    from ...settings import Settings


def open_vector_cache(settings: Settings, path: Path | str | None = None) -> CacheStore:
    """The embedding cache of these settings; `path` is the SQLite file when no URL is set
    (default: the settings' own)."""
    url = settings.shared_store_url()
    if url:
        try:
            from .postgres import PostgresVectorCache  # psycopg2: the cluster extra, only needed here
        except ImportError as exc:
            raise ImportError(f"REPO_INDEX_CACHE_URL is set but psycopg2 is not installed ({exc.name}): "
                              "pip install 'repo_index[cluster]' (or unset it for the SQLite cache)") from None
        return PostgresVectorCache(url)
    from .store import VectorCache

    return VectorCache(path if path is not None else settings.embedding_cache_path())
