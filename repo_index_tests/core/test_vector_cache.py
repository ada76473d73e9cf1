"""The vector cache: references, pruning, garbage collection, concurrent writers; each test
that holds for both databases runs on the SQLite file and on PostgreSQL (`cache_at`)."""

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from repo_index.core.embed.cache import VectorCache, text_key
from repo_index.core.embed.cache.keys import key_array
from repo_index_tests import cache_backends
from repo_index_tests.cache_backends import open_at

M, D = "model", 4
cache_at = cache_backends.cache_at
postgres_port = cache_backends.postgres_port


def vec(i: int) -> np.ndarray:
    return np.full(D, i, dtype=np.float32)


def keys(*names: str) -> list[bytes]:
    return [text_key(n) for n in names]


def put(cache: VectorCache, *names: str) -> None:
    cache.put_many(M, D, [(k, vec(i)) for i, k in enumerate(keys(*names))])


def present(cache: VectorCache, *names: str) -> set[str]:
    found = cache.present(M, D, keys(*names))
    return {n for n, k in zip(names, keys(*names)) if k in found}


def test_vectors_round_trip_as_float32(cache_at: str):
    with open_at(cache_at) as cache:
        put(cache, "a", "b")
        got = cache.get_many(M, D, keys("a", "b", "c"))
        assert set(got) == set(keys("a", "b"))
        assert got[text_key("b")].dtype == np.float32 and (got[text_key("b")] == 1).all()
        assert cache.get_many(M, D + 1, keys("a")) == {}  # dimensions are part of the key


def test_present_answers_by_key_and_matrix_gives_rows_in_order(cache_at: str):
    with open_at(cache_at) as cache:
        put(cache, "a", "b", "c")  # vectors full of 0, 1, 2
        assert cache.present(M, D, keys("c", "a", "x", "a")) == set(keys("a", "c"))
        assert cache.present(M, D + 1, keys("a")) == set()
        got = cache.matrix(M, D, keys("c", "a", "c", "b"))  # repeats and any order
        assert got.dtype == np.float32 and got.shape == (4, D)
        assert got[:, 0].tolist() == [2, 0, 2, 1]
        assert cache.matrix(M, D, []).shape == (0, D)
        with pytest.raises(LookupError, match="2 of 3 vectors are not in the embedding cache"):
            cache.matrix(M, D, keys("a", "x", "y", "x"))


def test_present_and_matrix_span_several_queries(cache_at: str):
    n = 25_000  # more keys than one `IN (...)` takes
    names = [f"v{i}" for i in range(n)]
    with open_at(cache_at) as cache:
        cache.put_many(M, D, [(k, vec(i)) for i, k in enumerate(keys(*names))])
        wanted = keys(*names[::-1])
        assert cache.present(M, D, wanted) == set(wanted)
        assert cache.matrix(M, D, wanted)[:, 0].tolist() == list(range(n - 1, -1, -1))


def test_a_vector_is_pruned_only_when_no_repository_uses_it(cache_at: str):
    with open_at(cache_at) as cache:
        put(cache, "shared", "only-a", "only-b")
        cache.set_refs("a", M, D, set(keys("shared", "only-a")))
        cache.set_refs("b", M, D, set(keys("shared", "only-b")))
        assert cache.set_refs("a", M, D, set()) == 1  # only-a goes, shared stays for b
        assert present(cache, "shared", "only-a", "only-b") == {"shared", "only-b"}
        assert cache.drop_owner("b") == 2
        assert cache.count() == 0


def test_switching_model_releases_the_old_models_vectors(cache_at: str):
    with open_at(cache_at) as cache:
        put(cache, "x")
        cache.set_refs("a", M, D, set(keys("x")))
        cache.put_many("other-model", D, [(text_key("x"), vec(7))])
        assert cache.set_refs("a", "other-model", D, set(keys("x"))) == 1
        assert cache.count(M) == 0 and cache.count("other-model") == 1


def test_a_reservation_protects_vectors_from_another_runs_pruning(cache_at: str):
    with open_at(cache_at) as cache:
        put(cache, "k")
        cache.set_refs("a", M, D, set(keys("k")))
        # Run b starts and will reuse k; meanwhile a's new version no longer uses k.
        cache.reserve("b", M, D, keys("k", "not-yet-embedded"))
        assert cache.set_refs("a", M, D, set()) == 0
        assert present(cache, "k") == {"k"}


def test_a_reservation_committed_during_another_owners_prune_is_kept(cache_at: str):
    with open_at(cache_at) as a, open_at(cache_at) as b:
        put(a, "k")
        a.set_refs("a", M, D, set(keys("k")))
        pruned: list[int] = []
        # Run b's reservation of k is written but not yet committed when a's prune starts:
        # the prune must wait for it, not read the references without it and delete k.
        with b._sql.write():
            b._refs._store_keys("b", M, D, key_array(keys("k")))
            pruning = threading.Thread(target=lambda: pruned.append(a.set_refs("a", M, D, set())))
            pruning.start()
            pruning.join(0.5)
            assert pruning.is_alive()  # waiting for b's transaction
        pruning.join(60)
        assert pruned == [0]
        assert present(a, "k") == {"k"}


def test_vectors_written_before_a_crash_stay_referenced_until_the_next_run(cache_at: str):
    with open_at(cache_at, grace_days=0) as cache:
        # A run reserves, receives two vectors, then dies before set_refs.
        cache.reserve("a", M, D, keys("v1", "v2", "v3"))
        put(cache, "v1", "v2")
        cache.set_refs("other", M, D, set())  # another repository's run, with its sweep
        assert cache.collect_unreferenced() == 0
        assert present(cache, "v1", "v2") == {"v1", "v2"}
        # The next run of a no longer has v2: now it goes.
        assert cache.set_refs("a", M, D, set(keys("v1", "v3"))) == 1
        assert present(cache, "v1", "v2") == {"v1"}


def test_unreferenced_vectors_are_collected_after_the_grace_period(cache_at: str):
    with open_at(cache_at, grace_days=1) as cache:
        put(cache, "fresh", "owned")
        cache.set_refs("a", M, D, set(keys("owned")))
        cache._sql.execute("UPDATE vectors SET added = added - 2 * 86400")  # two days pass
        put(cache, "young")
        assert cache.collect_unreferenced() == 1
        assert present(cache, "fresh", "owned", "young") == {"owned", "young"}


def test_a_version_0_cache_is_migrated_without_losing_vectors(tmp_path: Path):
    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE vectors (model TEXT NOT NULL, dims INTEGER NOT NULL, key BLOB NOT NULL, vector BLOB NOT NULL,
            PRIMARY KEY (model, dims, key)) WITHOUT ROWID;
        CREATE TABLE refs (owner TEXT NOT NULL, model TEXT NOT NULL, dims INTEGER NOT NULL, key BLOB NOT NULL,
            PRIMARY KEY (owner, model, dims, key)) WITHOUT ROWID;
        CREATE INDEX refs_by_key ON refs (model, dims, key);
    """)
    db.executemany("INSERT INTO vectors VALUES (?, ?, ?, ?)",
                   [(M, D, text_key(n), vec(i).tobytes()) for i, n in enumerate(["used", "orphan"])])
    db.execute("INSERT INTO refs VALUES ('a', ?, ?, ?)", (M, D, text_key("used")))
    db.commit()
    db.close()
    with VectorCache(path) as cache:
        assert present(cache, "used", "orphan") == {"used", "orphan"}
        assert cache.collect_unreferenced() == 1  # legacy rows count as old
        assert present(cache, "used", "orphan") == {"used"}


def test_a_version_1_cache_keeps_every_reference(tmp_path: Path):
    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE vectors (model TEXT NOT NULL, dims INTEGER NOT NULL, key BLOB NOT NULL, added REAL NOT NULL,
            vector BLOB NOT NULL, UNIQUE (model, dims, key));
        CREATE INDEX vectors_by_added ON vectors (added);
        CREATE TABLE refs (owner TEXT NOT NULL, model TEXT NOT NULL, dims INTEGER NOT NULL, key BLOB NOT NULL,
            PRIMARY KEY (owner, model, dims, key)) WITHOUT ROWID;
        CREATE INDEX refs_by_key ON refs (model, dims, key);
        CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
        PRAGMA user_version=1;
    """)
    names = ["shared", "only-a", "only-b", "orphan"]
    db.executemany("INSERT INTO vectors VALUES (?, ?, ?, 0, ?)",
                   [(M, D, text_key(n), vec(i).tobytes()) for i, n in enumerate(names)])
    db.executemany("INSERT INTO refs VALUES (?, ?, ?, ?)",
                   [("a", M, D, text_key("shared")), ("a", M, D, text_key("only-a")),
                    ("b", M, D, text_key("shared")), ("b", M, D, text_key("only-b"))])
    db.commit()
    db.close()
    with VectorCache(path) as cache:
        assert cache.owners() == {"a": 2, "b": 2}
        assert cache.collect_unreferenced() == 1  # the orphan only
        assert cache.set_refs("a", M, D, set()) == 1  # only-a goes, shared stays for b
        assert present(cache, *names) == {"shared", "only-b"}


def test_keys_with_trailing_zero_bytes_are_told_apart(cache_at: str):
    # numpy's fixed-width bytes drop trailing NULs when converted back: pruning must not.
    ka, kb = b"\x07" * 31 + b"\x00", b"\x07" * 30 + b"\x00\x00"
    with open_at(cache_at) as cache:
        cache.put_many(M, D, [(ka, vec(1)), (kb, vec(2))])
        cache.set_refs("a", M, D, {ka, kb})
        cache.set_refs("b", M, D, {kb})
        assert cache.set_refs("a", M, D, set()) == 1
        assert cache.present(M, D, [ka, kb]) == {kb}
        with pytest.raises(ValueError, match="32-byte"):
            cache.reserve("a", M, D, [b"short"])


def _writer(where: str, owner: str, n: int, together) -> None:
    together.wait()  # both processes are up: start writing at the same moment
    with open_at(where) as cache:
        names = [f"{owner}-{i}" for i in range(n)]
        # Texts both repositories hold, arriving in each in another order: on PostgreSQL
        # two transactions inserting the same keys in opposite orders wait on each other.
        common = [f"common-{i}" for i in range(n)]
        cache.reserve(owner, M, D, keys(*names, *common, "shared"))
        for i in range(0, n, 50):  # many transactions, as responses arrive
            batch = common[i:i + 50] if owner == "a" else common[i:i + 50][::-1]
            cache.put_many(M, D, [(text_key(name), vec(0)) for name in names[i:i + 50] + batch])
            cache.put_many(M, D, [(text_key("shared"), vec(0))])
        cache.set_refs(owner, M, D, set(keys(*names, *common, "shared")))


def test_two_processes_write_at_once(cache_at: str):
    n = 1000
    ctx = multiprocessing.get_context("spawn")
    together = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(cache_at, owner, n, together)) for owner in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]  # no "database is locked", no deadlock
    with open_at(cache_at) as cache:
        assert cache.count() == 3 * n + 1  # each key once
        assert cache.owners() == {"a": 2 * n + 1, "b": 2 * n + 1}


def test_concurrent_reader_sees_committed_vectors_while_a_writer_holds_the_lock(tmp_path: Path):
    path = tmp_path / "c.sqlite"
    with VectorCache(path) as writer, VectorCache(path) as reader:
        put(writer, "committed")
        writer._db.execute("BEGIN IMMEDIATE")  # a long write transaction in progress
        writer._db.execute("INSERT INTO meta VALUES ('x', 1)")
        assert present(reader, "committed") == {"committed"}  # WAL: readers are not blocked
        writer._db.execute("COMMIT")


@pytest.mark.parametrize("dims", [384, 1536])
def test_put_many_accepts_rows_of_a_response_matrix(cache_at: str, dims: int):
    matrix = np.random.default_rng(0).standard_normal((3, dims)).astype(np.float32)
    with open_at(cache_at) as cache:
        cache.put_many(M, dims, zip(keys("a", "b", "c"), matrix))
        got = cache.get_many(M, dims, keys("a", "b", "c"))
        np.testing.assert_array_equal(np.vstack([got[k] for k in keys("a", "b", "c")]), matrix)


def test_background_writer_puts_everything_queued_before_close(cache_at: str):
    from repo_index.core.embed.cache import BackgroundWriter

    with open_at(cache_at) as cache:
        writer = BackgroundWriter(cache, M, D)
        for i in range(0, 1000, 10):  # answers arriving faster than single commits: coalesced
            writer.put([(text_key(f"v{j}"), vec(j)) for j in range(i, i + 10)])
        writer.close()
        assert cache.count() == 1000
        assert (cache.get_many(M, D, keys("v999"))[text_key("v999")] == 999).all()


def test_background_writer_reports_a_failed_write(tmp_path: Path):
    from repo_index.core.embed.cache import BackgroundWriter

    cache = VectorCache(tmp_path / "c.sqlite")
    cache.close()  # every write now fails
    writer = BackgroundWriter(cache, M, D)
    writer.put([(text_key("v"), vec(1))])
    with pytest.raises(sqlite3.ProgrammingError):
        writer.close()
