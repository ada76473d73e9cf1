"""Searching an embedded Chroma while a sync writes it (issue: a search beside the sync of
a large repository segfaulted, failed every later search with "Error finding id" and wrote a
52 GB link_lists.bin). Every process that opens the folder holds its readers-writer lock."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import chromadb
import pytest

BIN = Path(sys.executable).parent
BATCHES, BATCH, DIMS = 30, 1000, 64

# The sync's write pattern: batches of upserts into the repository's collection, under the
# lock every writer holds (assets/collection.py).
WRITER = textwrap.dedent(f"""
    import numpy as np
    from repo_index.core.embed.model import resolve_model
    from repo_index.core.index.client import ChromaSettings, open_client, write_lock
    from repo_index.core.settings import get_settings

    settings = get_settings()
    chroma = ChromaSettings.from_settings(settings)
    model = resolve_model("openai", "text-embedding-3-small", {DIMS}, settings.openai_base_url, True)
    rng = np.random.default_rng(0)
    with write_lock(chroma):
        coll = open_client(chroma).get_or_create_collection(
            chroma.collection_name("svc"), embedding_function=None,
            metadata={{"hnsw:space": "cosine", **model.collection_metadata()}})
        for start in range(0, {BATCHES * BATCH}, {BATCH}):
            ids = [f"c{{i}}" for i in range(start, start + {BATCH})]
            coll.upsert(ids=ids, embeddings=rng.standard_normal(({BATCH}, {DIMS})).astype(np.float32),
                        documents=[f"def handler_{{i}}(): pass" for i in range(start, start + {BATCH})],
                        metadatas=[{{"path": f"m{{i}}.py", "start_line": 1, "end_line": 1, "symbol": "",
                                     "language": "python"}} for i in range(start, start + {BATCH})])
    print("synced", coll.count())
""")


SEARCH = [BIN / "repo-index", "search", "handler", "--repo", "svc", "-k", "3"]


def seeded_project(tmp_path, openai_server) -> dict:
    """The environment of a new project (its own, new Dagster instance) whose collection
    `svc` holds one batch; the searches of SEARCH answer from it."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "REPO_INDEX_DATA_DIR": str(tmp_path / "data"), "OPENAI_API_KEY": "k",
           "OPENAI_BASE_URL": openai_server.base_url, "REPO_INDEX_REGISTRY": str(tmp_path / "repositories.yaml")}
    seed = subprocess.run([sys.executable, "-c", WRITER.replace(str(BATCHES * BATCH), str(BATCH))], env=env,
                          capture_output=True, text=True)
    assert seed.returncode == 0, seed.stderr
    return env


@pytest.mark.slow
def test_searches_during_a_sync_wait_for_it_and_leave_the_collection_whole(tmp_path, openai_server):
    env = seeded_project(tmp_path, openai_server)

    writer = subprocess.Popen([sys.executable, "-c", WRITER], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    # Searches started one after another while the sync runs, each in its own process.
    searches = []
    while writer.poll() is None and len(searches) < 6:
        searches.append(subprocess.Popen(SEARCH, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(1.5)
    out, err = writer.communicate()
    assert writer.returncode == 0 and f"synced {BATCHES * BATCH}" in out, err
    answers = [(p.communicate(timeout=600), p.returncode) for p in searches]
    assert len(answers) >= 2, "the sync ended before a second search started"
    for (stdout, stderr), code in answers:
        assert code == 0 and stdout.count(".py:") == 3, stderr
    assert any("waiting for" in stderr for (_, stderr), _ in answers), answers

    # Whole and readable afterwards, with no file grown out of bounds.
    coll = chromadb.PersistentClient(path=str(tmp_path / "data" / "chroma")).get_collection("repo_index-svc")
    assert coll.count() == BATCHES * BATCH
    assert len(coll.get(ids=[f"c{i}" for i in range(0, BATCHES * BATCH, 997)])["ids"]) == len(range(0, BATCHES * BATCH, 997))
    used = sum(p.stat().st_blocks * 512 for p in (tmp_path / "data" / "chroma").rglob("*") if p.is_file())
    assert used < 200 * 2**20, f"{used / 2**30:.1f} GB on disk for {BATCHES * BATCH} vectors"
    final = subprocess.run(SEARCH, env=env, capture_output=True, text=True)
    assert final.returncode == 0 and final.stdout.count(".py:") == 3, final.stderr


def test_searches_started_together_on_a_new_project_leave_its_instance_usable(tmp_path, openai_server):
    """Each in-process search opens the Dagster instance (for freshness): started together
    on a new project, they created its SQLite storage at once and left it with two schema
    heads, refused by every later command."""
    import dagster as dg

    env = seeded_project(tmp_path, openai_server)
    searches = [subprocess.Popen(SEARCH, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(6)]
    for proc in searches:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0 and stdout.count(".py:") == 3, stderr
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.get_runs(limit=1) == [] and instance.all_instigator_state() == []
