"""A disk that fills up during the sync, for real: embedded Chroma on a small tmpfs, filled by
another file. The run fails saying the disk is full; status and search name the damaged
repository in one line and keep answering for the others; once space is freed the next
run rebuilds the collection from the embedding cache, embedding nothing again."""

import json
import os
import subprocess
from pathlib import Path

import chromadb
import pytest

from repo_index_tests.pipeline import (
    BIN, assert_collection_exact, expected_chunks, materialize, project_env, register, run, write_python_files,
)

pytestmark = pytest.mark.slow

# Chroma keeps a collection's first 1000 records in its log and writes the HNSW index files
# when a sync crosses that many: the second run (600 -> 1200 chunks) writes them, and with
# this much space left the disk fills midway through them (measured with Chroma 1.5: from
# about 5 MB to 12 MB left, the index files are left half written).
FIRST, SECOND = 600, 1200
LEFT_FREE = 8 << 20


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a small disk to fill needs `mount -t tmpfs` (root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)  # the test process may still hold Chroma files


def fill(disk: Path, leave: int) -> Path:
    """Another program's file takes all but `leave` bytes of the disk."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - leave)
    return filler


def status(env: dict) -> dict[str, dict]:
    done = run([BIN / "repo-index", "status", "--json"], env)
    assert "Traceback" not in done.stderr, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)}


def test_disk_full_mid_sync_is_said_the_others_keep_working_and_freeing_space_converges(
        tmp_path, openai_server, small_disk):
    svc = write_python_files(tmp_path / "svc", FIRST)
    other = write_python_files(tmp_path / "other", 6)
    env = project_env(tmp_path, openai_server.base_url, REPO_INDEX_CHROMA_PATH=str(small_disk / "chroma"))
    register(env, "svc", svc)
    register(env, "other", other)
    materialize(env, "other")
    materialize(env, "svc")

    write_python_files(svc, SECOND)  # 600 more modules
    filler = fill(small_disk, LEFT_FREE)
    full = materialize(env, "svc", check=False)
    assert full.returncode != 0
    assert "DiskFull: disk full while writing the collection repo_index-svc" in full.stderr, full.stderr[-3000:]
    assert f"MB free on the disk holding {small_disk / 'chroma'}" in full.stderr

    filler.unlink()  # space freed; the collection the full disk damaged is still unreadable
    rows = status(env)
    assert rows["other"]["state"].startswith("in step"), rows["other"]
    assert rows["svc"]["state"].startswith("its collection cannot be read (InternalError: "), rows["svc"]
    assert "`repo-index index svc` to rebuild it from the embedding cache" in rows["svc"]["state"]
    assert "\n" not in rows["svc"]["state"]
    found = run([BIN / "repo-index", "search", "compute value 3", "--json"], env)
    assert "Traceback" not in found.stderr
    assert "warning: svc not searched: its collection cannot be read" in found.stderr
    hits = json.loads(found.stdout)
    assert hits and {h["repository"] for h in hits} == {"other"}

    openai_server.reset_counters()
    repaired = materialize(env, "svc")
    assert "repo_index-svc could not be read (InternalError: " in repaired.stdout + repaired.stderr
    assert openai_server.requests_total == 0  # rebuilt from the cached vectors
    rows = status(env)
    assert rows["svc"]["state"].startswith("in step") and rows["svc"]["records"] == SECOND, rows["svc"]
    client = chromadb.PersistentClient(path=str(small_disk / "chroma"))
    assert [c.name for c in client.list_collections()] != [] and {c.name for c in client.list_collections()} == {
        "repo_index-svc", "repo_index-other"}
    data = Path(env["REPO_INDEX_DATA_DIR"])  # the lexical indexes: not beside the Chroma folder here
    assert_collection_exact(client.get_collection("repo_index-svc"), expected_chunks(svc), data_dir=data)
    assert_collection_exact(client.get_collection("repo_index-other"), expected_chunks(other), data_dir=data)
