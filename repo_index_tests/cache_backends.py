"""The embedding cache on either database, for tests that hold for both: the SQLite file
(the default) and PostgreSQL (REPO_INDEX_CACHE_URL) on a real server started once per
session, each test with a database of its own.

Fixtures are taken into a test module by assignment (`postgres_url = cache_backends.postgres_url`).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from repo_index.core.embed.cache import VectorCache
from repo_index_tests.services import postgres_server

if TYPE_CHECKING:
    from repo_index.core.embed.cache import CacheStore


@pytest.fixture(scope="session")
def postgres_port():
    with postgres_server() as port:
        yield port


def new_database(port: int) -> str:
    """The URL of a new, empty database on the server at `port`."""
    import psycopg2

    name = f"cache_{uuid.uuid4().hex[:12]}"
    db = psycopg2.connect(f"postgresql://dagster@127.0.0.1:{port}/dagster")
    try:
        db.autocommit = True
        with db.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
    finally:
        db.close()
    return f"postgresql://dagster@127.0.0.1:{port}/{name}"


@pytest.fixture
def postgres_url(postgres_port) -> str:
    return new_database(postgres_port)


@pytest.fixture(params=["sqlite", "postgres"])
def cache_at(request, tmp_path: Path) -> str:
    """Where a cache is: a SQLite file's path, or a PostgreSQL URL (open with `open_at`)."""
    if request.param == "sqlite":
        return str(tmp_path / "c.sqlite")
    return new_database(request.getfixturevalue("postgres_port"))


def open_at(where: str, grace_days: float | None = None) -> CacheStore:
    """The cache at `where` (as `cache_at` gives it), as the product opens it."""
    kwargs = {} if grace_days is None else {"grace_days": grace_days}
    if where.startswith("postgresql://"):
        from repo_index.core.embed.cache.postgres import PostgresVectorCache

        return PostgresVectorCache(where, **kwargs)
    return VectorCache(Path(where), **kwargs)
