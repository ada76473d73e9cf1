"""Chroma sync against a real embedded Chroma in a temp folder."""

import numpy as np
import pandas as pd
import pytest

from repo_index.core.store import ChromaSettings, existing_records, open_client, query_collection, sync_collection

COLUMNS = ["chunk_id", "path", "language", "start_line", "end_line", "symbol", "n_tokens", "text", "content_hash"]


def table(rows):
    return pd.DataFrame([(cid, path, "python", s, e, sym, 5, f"text of {cid}", f"h-{cid}") for cid, path, s, e, sym in rows],
                        columns=COLUMNS)


def vectors(ids, dims=8):
    return np.vstack([np.random.default_rng(abs(hash(i)) % 2**32).random(dims, dtype=np.float32) for i in ids])


@pytest.fixture
def client(tmp_path):
    return open_client(ChromaSettings(mode="embedded", path=str(tmp_path / "chroma")))


def sync(client, chunks, model="m", dims=8, commit="c1"):
    ids = list(chunks["chunk_id"])
    return sync_collection(client, "repo_index-svc", chunks, ids, vectors(ids, dims), model, dims, commit, "svc")


def test_sync_adds_deletes_and_moves(client):
    first = table([("a", "x.py", 1, 5, "f"), ("b", "x.py", 6, 9, "g"), ("c", "y.py", 1, 3, "")])
    stats = sync(client, first)
    assert (stats.added, stats.deleted, stats.moved, stats.total) == (3, 0, 0, 3)

    # b moved down, c vanished (file deleted), d is new.
    second = table([("a", "x.py", 1, 5, "f"), ("d", "x.py", 6, 8, "h"), ("b", "x.py", 9, 12, "g")])
    stats = sync(client, second, commit="c2")
    assert (stats.added, stats.deleted, stats.moved, stats.unchanged, stats.total) == (1, 1, 1, 1, 3)
    coll = client.get_collection("repo_index-svc")
    records = existing_records(coll)
    assert set(records) == {"a", "b", "d"}
    assert (records["b"]["start_line"], records["b"]["end_line"], records["b"]["commit"]) == (9, 12, "c2")
    assert records["a"]["commit"] == "c1"  # untouched records keep the commit they were written at
    assert coll.metadata["commit"] == "c2"


def test_model_change_rebuilds_the_collection(client):
    sync(client, table([("a", "x.py", 1, 5, "f")]))
    stats = sync(client, table([("a", "x.py", 1, 5, "f")]), model="other", dims=4)
    assert stats.rebuilt and stats.added == 1
    coll = client.get_collection("repo_index-svc")
    assert coll.metadata["embedding_model"] == "other" and coll.metadata["dimensions"] == 4


def test_query_returns_hits_with_scores_and_filters(client):
    chunks = table([("a", "src/x.py", 1, 5, "f"), ("b", "lib/y.py", 1, 3, "g")])
    ids = list(chunks["chunk_id"])
    vecs = vectors(ids)
    sync_collection(client, "repo_index-svc", chunks, ids, vecs, "m", 8, "c1", "svc")
    coll = client.get_collection("repo_index-svc")
    hits = query_collection(coll, "svc", vecs[1], k=2)
    assert hits[0].path == "lib/y.py" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.path for h in query_collection(coll, "svc", vecs[1], k=2, path_glob="src/*")] == ["src/x.py"]
