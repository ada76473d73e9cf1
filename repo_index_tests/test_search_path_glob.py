"""`repo-index search --path GLOB` searches the files the glob names, however far down the
unfiltered ranking their chunks are: the glob is resolved against the collection's paths
and handed to Chroma's query, not applied to its first k×10 answers."""

import fnmatch
import json

import pytest

from repo_index.core.index.paths import collection_paths
from repo_index.core.index.client import open_client
from repo_index.core.search.query import search
from repo_index.core.settings import Settings
from repo_index_tests.pipeline import BIN, index_in_process, project_env, run, write_python_files

QUERY = "compute value scaled"


def cli_search(env, *args) -> list[dict]:
    """Search by vectors: what Chroma's query under the glob finds."""
    return json.loads(run([BIN / "repo-index", "search", QUERY, "--json", "--mode", "vector", *args], env).stdout)


@pytest.mark.slow
def test_a_glob_over_a_thousand_files_finds_them_below_the_unfiltered_top_hits(tmp_path, openai_server, monkeypatch):
    env = project_env(tmp_path, openai_server.base_url)
    root = write_python_files(tmp_path / "repo", 1000)  # src/module_N.py: compute_value_N, near the query
    for i in range(1000):  # 1,000 files that share no word with the query
        (root / "tests").mkdir(exist_ok=True)
        (root / "tests" / f"test_{i:04d}.py").write_text(f"def check_fixture_{i}(db):\n    assert db.rows == {i}\n")
    chroma = index_in_process(env, "big", root)

    unfiltered = cli_search(env, "-k", "50")  # k×10 for k=5: all the old filter ever looked at
    assert len(unfiltered) == 50 and all(h["path"].startswith("src/") for h in unfiltered)

    hits = cli_search(env, "--path", "tests/*", "-k", "5")
    assert len(hits) == 5 and all(fnmatch.fnmatch(h["path"], "tests/*") for h in hits), hits
    # `*` spans folders, as fnmatch always did; a glob that names one file finds its chunk
    assert [h["path"] for h in cli_search(env, "--path", "*/test_0042.py")] == ["tests/test_0042.py"]
    assert cli_search(env, "--path", "docs/*") == []
    assert {h["path"] for h in cli_search(env, "--path", "*.py", "-k", "3")} <= {h["path"] for h in unfiltered}
    # a few records are ranked exactly, scored as Chroma scores them
    [one] = cli_search(env, "--path", unfiltered[0]["path"], "-k", "1")
    assert one["path"] == unfiltered[0]["path"] and one["score"] == pytest.approx(unfiltered[0]["score"], abs=1e-5)

    # More records than are ranked exactly: Chroma's own search, under the path filter.
    settings = Settings(OPENAI_API_KEY=env["OPENAI_API_KEY"], OPENAI_BASE_URL=env["OPENAI_BASE_URL"])
    monkeypatch.setattr("repo_index.core.index.query.EXACT_SCAN_RECORDS", 100)
    hits = search(QUERY, ["big"], k=5, path_glob="tests/*", settings=settings, chroma=chroma, mode="vector")
    assert len(hits) == 5 and all(h.path.startswith("tests/") for h in hits)
    monkeypatch.undo()

    # The paths came from the last sync's file; a sync that left none (another machine's)
    # makes search read them from Chroma, never trust the stale list.
    (root / "tests" / "test_new.py").write_text("def check_fixture_new(db):\n    assert db.rows\n")
    index_in_process(env, "big", root, spans=False)
    coll = open_client(chroma).get_collection(chroma.collection_name("big"))
    assert "tests/test_new.py" in collection_paths(coll)
    [hit] = search(QUERY, ["big"], k=5, path_glob="tests/test_new.py", settings=settings, chroma=chroma,
                   mode="vector")
    assert hit.path == "tests/test_new.py" and "check_fixture_new" in hit.text
