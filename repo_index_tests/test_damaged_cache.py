"""A damaged embedding cache (half truncated, overwritten with garbage) is moved aside with
a message and the run goes on: the vectors are embedded again, never mixed with the
damaged file's, and the collection ends as a clean run's."""

import random
from pathlib import Path

import chromadb
import pytest

from repo_index.core.embed.cache import text_key
from repo_index_tests.pipeline import (
    assert_collection_exact, cached_keys, expected_chunks, materialize, project_env, register, write_python_files,
)

pytestmark = pytest.mark.slow


def _damage(cache: Path, how: str) -> None:
    size = cache.stat().st_size
    if how == "half_truncated":
        with open(cache, "r+b") as f:
            f.truncate(size // 2)
    else:
        cache.write_bytes(random.Random(7).randbytes(size))


@pytest.mark.parametrize("how", ["half_truncated", "garbage"])
def test_a_damaged_embedding_cache_is_moved_aside_and_the_run_embeds_again(tmp_path, openai_server, how):
    repo = write_python_files(tmp_path / "svc", 40)
    env = project_env(tmp_path, openai_server.base_url)
    register(env, "svc", repo)
    data = Path(env["REPO_INDEX_DATA_DIR"])
    materialize(env, "svc")
    cache = data / "embeddings.sqlite"
    assert not Path(f"{cache}-wal").exists()  # checkpointed when the run closed it: the file holds every vector
    _damage(cache, how)
    write_python_files(repo, 50)  # ten more modules: the sync adds their vectors, read from the new cache
    table = expected_chunks(repo)

    openai_server.reset_counters()
    done = materialize(env, "svc", check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"the embedding cache {cache} is damaged" in output and "moved aside to embeddings.sqlite.corrupt-" in output
    aside = list(data.glob("embeddings.sqlite.corrupt-*"))
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))] == [aside[0].name]
    # Every chunk embedded again, once: nothing was taken from the damaged file.
    counts = openai_server.embedded_counts
    assert all(counts[t] == 1 for t in table["embedding_text"]) and len(table) == 50
    assert {text_key(t) for t in table["embedding_text"]} <= cached_keys(data)
    collection = chromadb.PersistentClient(path=str(data / "chroma")).get_collection("repo_index-svc")
    assert_collection_exact(collection, table)
