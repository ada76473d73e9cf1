"""The stored chunk table read once per process, never stale: a run whose steps share a
process reads a large table once, and any rewrite of the file, by this process or another,
is what the next read returns."""

import pickle
import subprocess
import sys

import pandas as pd

from repo_index.core.chunk import table as table_module
from repo_index.core.chunk.table import ChunkStore, ChunkTable


def _table(repo: str, text: str) -> ChunkTable:
    chunks = pd.DataFrame({"chunk_id": ["c1"], "path": ["a.py"], "text": [text], "file_sha256": ["f" * 64]})
    return ChunkTable(repo, "abc", "tree", {"max_tokens": 200}, chunks)


def test_a_saved_table_is_read_back_without_reading_the_file(tmp_path, monkeypatch):
    store = ChunkStore(tmp_path)
    store.save(_table("svc", "first"))
    reads = []
    real = table_module.load_pickles
    monkeypatch.setattr(table_module, "load_pickles", lambda *a, **k: reads.append(a) or real(*a, **k))
    assert store.load("svc").chunks["text"].tolist() == ["first"]
    assert store.reused_rows("svc", pd.DataFrame({"path": ["a.py"], "sha256": ["f" * 64]}),
                             {"max_tokens": 200})["text"].tolist() == ["first"]
    assert store.header("svc")["commit"] == "abc"
    assert reads == []


def test_a_table_rewritten_by_another_process_is_read_afresh(tmp_path):
    store = ChunkStore(tmp_path)
    store.save(_table("svc", "first"))
    assert store.load("svc").chunks["text"].tolist() == ["first"]
    # Another process (a step of the next run) writes the file with the same size.
    script = (f"import sys; sys.path.insert(0, {str(table_module.__file__.rsplit('/repo_index/', 1)[0])!r})\n"
              "from pathlib import Path\nfrom repo_index.core.chunk.table import ChunkStore\n"
              f"from repo_index_tests.core.test_chunk_table_reads import _table\n"
              f"ChunkStore(Path({str(tmp_path)!r})).save(_table('svc', 'secnd'))\n")
    subprocess.run([sys.executable, "-c", script], check=True)
    assert store.load("svc").chunks["text"].tolist() == ["secnd"]


def test_an_unreadable_table_is_not_served_from_memory(tmp_path):
    store = ChunkStore(tmp_path)
    store.save(_table("svc", "first"))
    store.path("svc").write_bytes(pickle.dumps({"params": {}})[:5])  # truncated in place
    assert store.header("svc") is None
    assert store.reused_rows("svc", pd.DataFrame({"path": [], "sha256": []}), {}) is None


def test_an_unchanged_table_is_not_written_again_and_a_changed_one_is(tmp_path):
    store = ChunkStore(tmp_path)
    store.save(_table("svc", "first"))
    before = store.path("svc").stat()
    store.load("svc")
    store.save(_table("svc", "first"))  # what an unchanged reindex hands the store
    after = store.path("svc").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    changed = _table("svc", "first")
    changed.commit = "def"  # a new commit that changed no indexed file: the header must say so
    store.save(changed)
    assert store.path("svc").stat().st_ino != before.st_ino
    assert store.header("svc")["commit"] == "def"
    store.save(_table("svc", "other"))
    assert store.load("svc").chunks["text"].tolist() == ["other"]
