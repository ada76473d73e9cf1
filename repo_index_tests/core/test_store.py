"""Chroma sync against a real embedded Chroma in a temp folder."""

import pickle
import sqlite3

import numpy as np
import pandas as pd
import pytest

from repo_index.core.embed.model import EmbeddingModel
from repo_index.core.index import client as client_module
from repo_index.core.index import sync as store
from repo_index.core.index.checks import DIMENSION_SAMPLE, check_consistency
from repo_index.core.index.client import ChromaSettings, open_client
from repo_index.core.index.lexical import LexicalIndex
from repo_index.core.index.query import query_collection
from repo_index.core.index.sync import existing_records, sync_collection

COLUMNS = ["chunk_id", "path", "language", "start_line", "end_line", "symbol", "defines", "header", "n_tokens", "text",
           "content_hash"]


def space(name="m", dims=8) -> EmbeddingModel:
    """An embedding model of `dims` dimensions (the sync records it; vectors come from the test)."""
    return EmbeddingModel("openai", name, dims, 8191, 512, 0.0)


def table(rows):
    return pd.DataFrame([(cid, path, "python", s, e, sym, sym, sym, 5, f"text of {cid}", f"h-{cid}")
                         for cid, path, s, e, sym in rows],
                        columns=COLUMNS)


def vectors(ids, dims=8):
    return np.vstack([np.random.default_rng(abs(hash(i)) % 2**32).random(dims, dtype=np.float32) for i in ids])


@pytest.fixture
def client(tmp_path):
    return open_client(ChromaSettings(mode="embedded", path=str(tmp_path / "chroma")))


def sync(client, chunks, model="m", dims=8, commit="c1", spans_file=None):
    ids = list(chunks["chunk_id"])
    return sync_collection(client, "repo_index-svc", chunks, ids, vectors(ids, dims), space(model, dims), commit, "svc",
                           spans_file=spans_file)


def records(client) -> dict[str, dict]:
    return existing_records(client.get_collection("repo_index-svc"))


def test_a_sync_reads_the_previous_syncs_spans_file_instead_of_every_record(client, tmp_path, monkeypatch):
    spans = tmp_path / "spans.pkl"
    first = table([("a", "x.py", 1, 5, "f"), ("b", "x.py", 6, 9, "g"), ("c", "y.py", 1, 3, "")])
    assert sync(client, first, spans_file=spans).spans_from == "chroma"
    read_back = []
    monkeypatch.setattr(store, "read_ids", lambda coll: read_back.append(coll) or set())
    assert sync(client, first, spans_file=spans).unchanged == 3  # wrong if the empty read were used
    second = table([("a", "x.py", 1, 5, "f"), ("d", "x.py", 6, 8, "h"), ("b", "x.py", 9, 12, "g")])
    stats = sync(client, second, commit="c2", spans_file=spans)
    assert (stats.spans_from, stats.added, stats.deleted, stats.unchanged) == ("file", 1, 1, 2)
    assert read_back == []
    assert set(records(client)) == {"a", "d", "b"}


@pytest.mark.parametrize("damage", ["empty", "text", "truncated", "foreign", "wrong_ids", "older_version"])
def test_a_damaged_spans_file_means_reading_chroma(client, tmp_path, damage):
    spans = tmp_path / "spans.pkl"
    chunks = table([("a", "x.py", 1, 5, "f"), ("b", "x.py", 6, 9, "g")])
    sync(client, chunks, spans_file=spans)
    real = spans.read_bytes()
    spans.write_bytes({"empty": b"", "text": b"not a pickle", "truncated": real[:len(real) // 2],
                       "foreign": pickle.dumps(["a", "list"]),
                       "wrong_ids": pickle.dumps({"token": pickle.loads(real)["token"], "ids": 3}),
                       # what syncs before this version left: line spans by id
                       "older_version": pickle.dumps({"token": pickle.loads(real)["token"],
                                                      "spans": {"a": (1, 5), "b": (6, 9)}})}[damage])
    changed = table([("a", "x.py", 2, 6, "f"), ("n", "x.py", 7, 10, "g")])
    stats = sync(client, changed, spans_file=spans)
    assert (stats.spans_from, stats.added, stats.deleted, stats.unchanged) == ("chroma", 1, 1, 1)
    assert set(records(client)) == {"a", "n"}
    assert sync(client, changed, spans_file=spans).spans_from == "file"  # rewritten whole


def test_the_spans_file_is_ignored_when_the_collection_changed_behind_it(client, tmp_path, monkeypatch):
    spans = tmp_path / "spans.pkl"
    chunks = table([("a", "x.py", 1, 5, "f"), ("b", "x.py", 6, 9, "g")])
    sync(client, chunks, spans_file=spans)
    client.get_collection("repo_index-svc").delete(ids=["b"])  # someone else's write
    stats = sync(client, chunks, spans_file=spans)
    assert (stats.spans_from, stats.added) == ("chroma", 1)

    sync(client, chunks, spans_file=tmp_path / "other.pkl")  # another machine syncs: its own file and token
    assert sync(client, chunks, spans_file=spans).spans_from == "chroma"

    # A sync that dies midway (a's move written, n's add not: the record count is as
    # before) leaves the collection without a valid token.
    changed = table([("a", "x.py", 2, 6, "f"), ("b", "x.py", 6, 9, "g"), ("n", "z.py", 1, 2, "")])
    real_get = store.get_collection

    def dying_collection(client_, name):
        coll = real_get(client_, name)
        if coll is None:
            return None

        class Dying:
            metadata = coll.metadata

            def __getattr__(self, attr):
                return getattr(coll, attr)

            def add(self, **kwargs):
                raise RuntimeError("killed")
        return Dying()

    monkeypatch.setattr(store, "get_collection", dying_collection)
    with pytest.raises(RuntimeError, match="killed"):
        sync(client, changed, spans_file=spans)
    monkeypatch.setattr(store, "get_collection", real_get)
    stats = sync(client, changed, spans_file=spans)
    assert (stats.spans_from, stats.added, stats.deleted) == ("chroma", 1, 0)
    assert set(records(client)) == {"a", "b", "n"}


def test_sync_adds_and_deletes_and_a_move_writes_nothing(client, monkeypatch):
    first = table([("a", "x.py", 1, 5, "f"), ("b", "x.py", 6, 9, "g"), ("c", "y.py", 1, 3, "")])
    stats = sync(client, first)
    assert (stats.added, stats.deleted, stats.total) == (3, 0, 3)
    # A record carries what search filters on; its lines, names and text are the lexical index's.
    assert records(client)["b"] == {"path": "x.py", "language": "python"}

    # b moved down, c vanished (file deleted), d is new.
    second = table([("a", "x.py", 1, 5, "f"), ("d", "x.py", 6, 8, "h"), ("b", "x.py", 9, 12, "g")])
    stats = sync(client, second, commit="c2")
    assert (stats.added, stats.deleted, stats.unchanged, stats.total) == (1, 1, 2, 3)
    coll = client.get_collection("repo_index-svc")
    assert set(records(client)) == {"a", "b", "d"} and coll.metadata["commit"] == "c2"

    # Lines that move (code inserted above) change no record: the sync writes nothing.
    from chromadb.api.models.Collection import Collection
    writes = []
    for method in ("add", "update", "upsert", "delete"):
        monkeypatch.setattr(Collection, method, lambda self, *a, _m=method, **kw: writes.append(_m))
    third = table([("a", "x.py", 3, 7, "f"), ("d", "x.py", 8, 10, "h"), ("b", "x.py", 11, 14, "g")])
    assert (sync(client, third, commit="c3").unchanged, writes) == (3, [])


def test_model_change_rebuilds_the_collection(client):
    sync(client, table([("a", "x.py", 1, 5, "f")]))
    stats = sync(client, table([("a", "x.py", 1, 5, "f")]), model="other", dims=4)
    assert stats.rebuilt and stats.added == 1
    coll = client.get_collection("repo_index-svc")
    assert coll.metadata["embedding_model"] == "other" and coll.metadata["dimensions"] == 4


def synced_index(tmp_path, chunks) -> LexicalIndex:
    index = LexicalIndex(tmp_path / "svc.fts.sqlite")
    index.sync(chunks, list(chunks["chunk_id"]))
    return index


def test_query_returns_hits_with_scores_and_filters_placed_by_the_lexical_index(client, tmp_path):
    chunks = table([("a", "src/x.py", 1, 5, "f"), ("b", "lib/y.py", 1, 3, "g")])
    ids = list(chunks["chunk_id"])
    vecs = vectors(ids)
    sync_collection(client, "repo_index-svc", chunks, ids, vecs, space(), "c1", "svc")
    coll = client.get_collection("repo_index-svc")
    with synced_index(tmp_path, chunks) as index:
        hits = query_collection(coll, "svc", vecs[1], k=2, index=index)
        assert hits[0].path == "lib/y.py" and hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert (hits[0].start_line, hits[0].end_line, hits[0].symbol, hits[0].language) == (1, 3, "g", "python")
        assert [h.path for h in query_collection(coll, "svc", vecs[1], k=2, path_glob="src/*", index=index)] == [
            "src/x.py"]
        # b moves down: the lexical index is synced, the collection unchanged, the hit follows.
        moved = table([("a", "src/x.py", 1, 5, "f"), ("b", "lib/y.py", 4, 6, "g")])
        index.sync(moved, ids)
        sync_collection(client, "repo_index-svc", moved, ids, vecs, space(), "c2", "svc")
        hit = query_collection(coll, "svc", vecs[1], k=1, index=index)[0]
        assert (hit.path, hit.start_line, hit.end_line) == ("lib/y.py", 4, 6)
        # A record the index no longer holds is a chunk deleted since: left out.
        index.sync(moved.iloc[:1], ids[:1])
        assert [h.chunk_id for h in query_collection(coll, "svc", vecs[1], k=2, index=index)] == ["a"]


def test_records_written_before_keep_answering_without_a_lexical_index(client):
    # A collection synced by an earlier version: every record carries its lines and names.
    coll = client.create_collection("repo_index-old", embedding_function=None, configuration={"hnsw": {"space": "cosine"}})
    vecs = vectors(["a", "b"])
    coll.add(ids=["a", "b"], embeddings=vecs, documents=["text of a", "text of b"], metadatas=[
        {"path": "x.py", "start_line": s, "end_line": e, "symbol": sym, "defines": sym, "language": "python",
         "content_hash": "h", "commit": "c0"} for s, e, sym in [(1, 5, "f"), (6, 9, "g")]])
    hit = query_collection(coll, "old", vecs[1], k=1)[0]
    assert (hit.chunk_id, hit.start_line, hit.end_line, hit.symbol, hit.text) == ("b", 6, 9, "g", "text of b")


def test_a_row_fetcher_is_asked_only_for_the_rows_added(client, monkeypatch):
    monkeypatch.setattr(store, "WRITE_BATCH", 2)
    asked: list[list[int]] = []

    def sync_fetching(chunks):
        ids = list(chunks["chunk_id"])
        matrix = vectors(ids)

        def rows(indexes: list[int]):
            asked.append(list(indexes))
            return matrix[indexes]
        return sync_collection(client, "repo_index-svc", chunks, ids, rows, space(), "c1", "svc")

    first = table([(c, "x.py", i, i, "") for i, c in enumerate("abcde")])
    assert sync_fetching(first).added == 5 and asked == [[0], [1, 2], [3, 4]]  # one call per write batch, short first
    asked.clear()
    assert sync_fetching(first).unchanged == 5 and asked == []  # an unchanged re-sync reads no vector

    # b deleted, f new, the rest moved down a line.
    second = table([(c, "x.py", i + 1, i + 1, "") for i, c in enumerate("afcde")])
    stats = sync_fetching(second)
    assert (stats.added, stats.deleted, stats.unchanged, asked) == (1, 1, 4, [[1]])
    got = client.get_collection("repo_index-svc").get(include=["embeddings"])
    assert sorted(got["ids"]) == list("acdef")
    want = dict(zip("afcde", vectors(list("afcde"))))
    for cid, vector in zip(got["ids"], got["embeddings"]):
        np.testing.assert_allclose(vector, want[cid], atol=1e-6)


def test_check_consistency_reads_ids_in_pages_and_samples_dimensions(client, monkeypatch):
    monkeypatch.setattr(client_module, "IDS_BATCH", 40)
    chunks = table([(f"c{i:03d}", "x.py", i, i, "") for i in range(150)])
    ids = list(chunks["chunk_id"])
    sync(client, chunks)
    coll = client.get_collection("repo_index-svc")

    seen = check_consistency(coll, ids, 8)
    assert (seen.missing, seen.orphaned, seen.wrong_dimensions, seen.records) == ([], [], 0, 150)
    assert seen.sampled == DIMENSION_SAMPLE < 150
    seen = check_consistency(coll, ids[1:] + ["new"], 8)
    assert (seen.missing, seen.orphaned) == (["new"], ["c000"])
    assert check_consistency(coll, ids, 4).wrong_dimensions == 150  # one dimensionality: none or all wrong

    # Why a sample is enough: the collection refuses a vector of other dimensions...
    with pytest.raises(Exception, match="dimension"):
        coll.add(ids=["odd"], embeddings=[[0.5] * 4])
    # ...and the dimensions it records are checked too.
    coll.modify(metadata={**coll.metadata, "dimensions": 4})
    assert check_consistency(client.get_collection("repo_index-svc"), ids, 8).wrong_dimensions == 150


def test_the_smoke_check_looks_for_the_definitions_lines_not_its_label(client, tmp_path):
    from repo_index.core.index.checks import pick_smoke_target, smoke_rank

    # The class header shares its first chunk with a method, so that chunk is labelled
    # after the method (as the chunker names it); the rest of the class is labelled after it.
    chunks = table([("a", "w.py", 1, 12, "DistinctiveWidget.render"), ("b", "w.py", 13, 30, "DistinctiveWidget"),
                    ("c", "other.py", 1, 9, "helper"), ("d", "w.py", 31, 40, "")])
    ids = list(chunks["chunk_id"])
    vecs = vectors(ids)
    sync_collection(client, "repo_index-svc", chunks, ids, vecs, space(), "c1", "svc")
    coll = client.get_collection("repo_index-svc")
    target = pick_smoke_target(chunks)
    assert (target.symbol, target.query, target.spans) == ("DistinctiveWidget", "DistinctiveWidget", {"w.py": (1, 30)})
    with synced_index(tmp_path, chunks) as index:
        assert smoke_rank(coll, vecs[0], target, index, k=1) == (1, ["w.py:1-12 DistinctiveWidget.render"])
        rank, top = smoke_rank(coll, vecs[2], target, index, k=1)  # only the helper comes back: the reason names it
        assert rank is None and top == ["other.py:1-9 helper"]


def test_a_model_change_is_built_beside_the_old_collection_and_swapped_in(client):
    chunks = table([("a", "x.py", 1, 5, "f"), ("b", "x.py", 6, 9, "g"), ("c", "y.py", 1, 3, "")])
    ids = list(chunks["chunk_id"])
    sync(client, chunks)  # model "m", 8 dims
    seen_while_building: list[tuple[str, int]] = []

    def rows(indexes: list[int]):
        live = client.get_collection("repo_index-svc")  # what a search would read right now
        seen_while_building.append((live.metadata["embedding_model"], live.count()))
        if len(seen_while_building) == 1:
            raise RuntimeError("killed mid-rebuild")
        return vectors(ids, 4)[indexes]

    with pytest.raises(RuntimeError, match="killed mid-rebuild"):
        sync_collection(client, "repo_index-svc", chunks, ids, rows, space("other", 4), "c2", "svc")
    # The failed rebuild left the old collection whole and searchable.
    live = client.get_collection("repo_index-svc")
    assert (live.metadata["embedding_model"], live.count()) == ("m", 3)

    stats = sync_collection(client, "repo_index-svc", chunks, ids, rows, space("other", 4), "c2", "svc")
    assert stats.rebuilt and stats.added == 3 and seen_while_building == [("m", 3), ("m", 3)]
    coll = client.get_collection("repo_index-svc")
    assert (coll.metadata["embedding_model"], coll.metadata["dimensions"], coll.count()) == ("other", 4, 3)
    assert [c.name for c in client.list_collections()] == ["repo_index-svc"]  # no rebuild left behind


def test_a_reader_leaves_a_lexical_index_of_another_version_to_the_next_sync(tmp_path):
    from repo_index.core.index.lexical import StaleLexicalIndex

    chunks = table([("a", "x.py", 1, 5, "f")])
    path = tmp_path / "svc.fts.sqlite"
    synced_index(tmp_path, chunks).close()
    with LexicalIndex(path) as index:
        index.db.execute("PRAGMA user_version=4")  # written by the version before places moved here
    with pytest.raises(StaleLexicalIndex):
        LexicalIndex(path, create=False)  # a search: reads nothing, rebuilds nothing
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 4
        assert db.execute("SELECT chunk_id FROM chunks").fetchall() == [("a",)]
    with LexicalIndex(path) as index:  # the next sync (a writer) rebuilds it in the new version
        assert index.sync(chunks, ["a"]).added == 1 and index.places(["a"])["a"].symbol == "f"
