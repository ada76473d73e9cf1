"""The PostgreSQL cache's own behaviour on a real server: workers starting at once on an
empty database, and messages that name the cache without its password."""

import multiprocessing

import pytest

from repo_index.core.embed.cache import text_key
from repo_index_tests import cache_backends
from repo_index_tests.services import free_port

postgres_port = cache_backends.postgres_port
postgres_url = cache_backends.postgres_url
PASSWORD = "pw-9d2f7c41e0"


def _open_and_write(url: str, i: int, together) -> None:
    from repo_index.core.embed.cache.postgres import PostgresVectorCache
    import numpy as np

    together.wait()
    with PostgresVectorCache(url) as cache:
        cache.put_many("m", 4, [(text_key(f"v{i}"), np.full(4, i, np.float32))])


def test_workers_starting_at_once_on_an_empty_database_all_create_and_write(postgres_url):
    n = 6
    ctx = multiprocessing.get_context("spawn")
    together = ctx.Barrier(n)
    procs = [ctx.Process(target=_open_and_write, args=(postgres_url, i, together)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * n  # no duplicate-catalog error creating the tables
    with cache_backends.open_at(postgres_url) as cache:
        assert cache.count() == n


def with_password(url: str) -> str:
    return url.replace("postgresql://dagster@", f"postgresql://dagster:{PASSWORD}@")


def test_messages_name_the_cache_without_its_password(postgres_url):
    # The test server trusts every local connection: the password is accepted and ignored.
    with cache_backends.open_at(with_password(postgres_url)) as cache:
        with pytest.raises(LookupError) as missing:
            cache.matrix("m", 4, [text_key("absent")])
    message = str(missing.value)
    assert "1 of 1 vectors are not in the embedding cache postgresql://dagster:***@127.0.0.1:" in message
    assert PASSWORD not in message


def test_an_unreachable_server_is_named_with_the_variable_and_without_the_password():
    from repo_index.core.embed.cache.postgres_sql import CacheUnavailable

    url = f"postgresql://dagster:{PASSWORD}@127.0.0.1:{free_port()}/dagster"
    with pytest.raises(CacheUnavailable) as failed:
        cache_backends.open_at(url)
    message = str(failed.value)
    assert message.startswith("cannot open the embedding cache postgresql://dagster:***@127.0.0.1:")
    assert "REPO_INDEX_CACHE_URL" in message and "Connection refused" in message
    assert PASSWORD not in message and failed.value.__cause__ is None and failed.value.__suppress_context__


def test_a_cache_url_without_psycopg2_says_what_to_install(monkeypatch, tmp_path):
    import sys

    from repo_index.core.embed.cache import open_vector_cache
    from repo_index.core.settings import Settings

    for name in [m for m in sys.modules if m == "psycopg2" or m.startswith(("psycopg2.", "repo_index.core.embed.cache.postgres"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # as if the cluster extra were not installed
    monkeypatch.setenv("REPO_INDEX_CACHE_URL", f"postgresql://dagster:{PASSWORD}@127.0.0.1:5432/dagster")
    monkeypatch.setenv("REPO_INDEX_DATA_DIR", str(tmp_path))
    with pytest.raises(ImportError, match=r"REPO_INDEX_CACHE_URL is set but psycopg2 is not installed \(psycopg2[.a-z]*\): "
                                          r"pip install 'repo_index\[cluster\]'") as failed:
        open_vector_cache(Settings.from_env())
    assert PASSWORD not in str(failed.value) and list(tmp_path.iterdir()) == []
