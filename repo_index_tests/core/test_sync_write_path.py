"""How sync_collection writes to a real embedded Chroma: the HNSW index left saved."""

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repo_index.core.embed.model import EmbeddingModel
from repo_index.core.index import sync as store
from repo_index.core.index.client import ChromaSettings, open_client
from repo_index.core.index.sync import sync_collection

NAME = "repo_index-svc"


def model(dims: int) -> EmbeddingModel:
    return EmbeddingModel("openai", "m", dims, 8191, 512, 0.0)


def table(ids: list[str], shift: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"chunk_id": ids, "path": [f"f{i % 50}.py" for i in range(len(ids))], "language": "python",
                         "start_line": [i + shift for i in range(len(ids))],
                         "end_line": [i + shift + 1 for i in range(len(ids))], "symbol": "f", "defines": "f",
                         "header": "f", "n_tokens": 5, "text": [f"text of {c}" for c in ids],
                         "content_hash": [f"h-{c}" for c in ids]})


def unit_rows(n: int, dims: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dims), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def unsaved_records(folder: Path) -> int:
    """Records in Chroma's log that the collection's saved HNSW index does not hold: what
    every process opening the collection next inserts into its copy of the index again.
    (Chroma records the last record each segment saved in `max_seq_id`.)"""
    with sqlite3.connect(folder / "chroma.sqlite3") as db:
        (segment,) = db.execute("SELECT id FROM segments WHERE scope = 'VECTOR'").fetchone()
        saved = db.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment,)).fetchone()
        return db.execute("SELECT COUNT(*) FROM embeddings_queue WHERE seq_id > ?", (saved[0] if saved else 0,)
                          ).fetchone()[0]


@pytest.fixture
def folder(tmp_path) -> Path:
    return tmp_path / "chroma"


def test_a_sync_of_a_batch_or_more_leaves_the_hnsw_index_saved(folder):
    client = open_client(ChromaSettings(path=str(folder)))
    n = 2 * store.WRITE_BATCH + store.WRITE_BATCH // 2  # two full batches and a short one
    ids = [f"c{i:06d}" for i in range(n)]
    vectors = unit_rows(n, 8, 1)
    sync_collection(client, NAME, table(ids), ids, vectors, model(8), "c1", "svc", store_text=False)
    assert unsaved_records(folder) == 0

    # A reindex: a batch's worth deleted, the rest moved down a line, a batch and a half added.
    kept = ids[store.WRITE_BATCH:]
    new = [f"n{i:06d}" for i in range(store.WRITE_BATCH + store.WRITE_BATCH // 2)]
    stats = sync_collection(client, NAME, table(kept + new, shift=1), kept + new,
                            np.vstack([vectors[store.WRITE_BATCH:], unit_rows(len(new), 8, 2)]), model(8), "c2", "svc",
                            store_text=False)
    assert (stats.deleted, stats.unchanged, stats.added) == (store.WRITE_BATCH, len(kept), len(new))
    assert unsaved_records(folder) == 0
