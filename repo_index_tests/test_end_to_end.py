"""The whole project as users run it: the CLI and `dagster asset materialize` against the
project's instance, a git source at a tag, the OpenAI provider against a loopback
OpenAI-compatible server, a real embedded Chroma, and search."""

import json
import os
import subprocess
import sys
from pathlib import Path

import chromadb
import pytest

from repo_index_tests.gitutil import git, make_repo

BIN = Path(sys.executable).parent

CONFIG_PY = '''"""Configuration loading."""
import json


def parse_config_file(path):
    """Parse a JSON config file into a dict."""
    with open(path) as fh:
        return json.load(fh)


class Settings:
    def __init__(self, values):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)
'''

SERVER_GO = '''package server

import "net/http"

// StartHTTPServer listens on addr and serves the handler.
func StartHTTPServer(addr string, h http.Handler) error {
	return http.ListenAndServe(addr, h)
}
'''

WIDGET_TS = '''export class Widget {
  render(): string {
    return "<div>widget</div>";
  }
}
'''


def run(args, env, timeout=300):
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def project_env(tmp_path, openai_server):
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "REPO_INDEX_DATA_DIR": str(tmp_path / "data"),
        "REPO_INDEX_REGISTRY": str(tmp_path / "repositories.yaml"),
        "OPENAI_API_KEY": "sk-test-e2e-secret",
        "OPENAI_BASE_URL": openai_server.base_url,
    }
    env.pop("REPO_INDEX_EMBEDDER", None)
    return env


@pytest.mark.slow
def test_git_source_at_a_tag_indexed_with_openai_then_searched(tmp_path, project_env, openai_server):
    upstream = make_repo(tmp_path / "upstream", {
        "src/config.py": CONFIG_PY, "src/server.go": SERVER_GO, "web/widget.ts": WIDGET_TS,
        "README.md": "# Demo\n\nA demo repository.\n", "assets/logo.png": "\x00\x01binary",
    })
    git(upstream, "tag", "v1")
    tagged = git(upstream, "rev-parse", "HEAD")
    (upstream / "src/later.py").write_text("def added_after_the_tag():\n    pass\n")
    git(upstream, "add", "-A")
    git(upstream, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "later")

    run([BIN / "repo-index", "add", "demo", upstream.as_uri(), "--ref", "v1"], project_env)
    assert "demo" in run([BIN / "repo-index", "list"], project_env)

    # First run: Dagster's own CLI against the project's instance.
    run([BIN / "dagster", "asset", "materialize", "-m", "repo_index.definitions", "--select", "*",
         "--partition", "demo"], project_env)
    first_requests = openai_server.requests_total
    assert first_requests > 0
    assert openai_server.api_keys == {"sk-test-e2e-secret"}

    data = Path(project_env["REPO_INDEX_DATA_DIR"])
    coll = chromadb.PersistentClient(path=str(data / "chroma")).get_collection("repo_index-demo")
    assert coll.metadata["commit"] == tagged and coll.metadata["embedding_model"] == "text-embedding-3-small"
    paths = {m["path"] for m in coll.get(include=["metadatas"])["metadatas"]}
    assert paths == {"src/config.py", "src/server.go", "web/widget.ts", "README.md"}  # not later.py, not the png

    # Second, identical run through repo-index: live progress, a summary, zero requests.
    openai_server.reset_counters()
    out = run([BIN / "repo-index", "index", "demo"], project_env)
    assert openai_server.requests_total == 0
    for stage in ("repo_files", "code_chunks", "chunk_embeddings", "vector_collection"):
        assert f"[demo] {stage}" in out and "started" in out
    assert "0 new" in out and f"demo @ {tagged[:12]}" in out

    hits = json.loads(run([BIN / "repo-index", "search", "parse config file", "--repo", "demo", "--json"], project_env))
    assert hits[0]["path"] == "src/config.py" and "parse_config_file" in hits[0]["text"]
    text_out = run([BIN / "repo-index", "search", "start http server", "-k", "2"], project_env)
    assert text_out.splitlines()[0].startswith("src/server.go:")

    # Status: indexed at the tag the entry names, as many records as chunks, in step.
    [row] = json.loads(run([BIN / "repo-index", "status", "--json"], project_env))
    assert (row["name"], row["indexed_commit"], row["head"], row["state"]) == ("demo", tagged, tagged, "in step")
    assert row["records"] == row["chunks"] == coll.count() and row["model"] == "text-embedding-3-small"

    # The API key stays out of logs, metadata and the collection.
    home = Path(project_env["DAGSTER_HOME"])
    for path in [*home.rglob("*"), *data.rglob("*")]:
        if path.is_file():
            assert b"sk-test-e2e-secret" not in path.read_bytes(), path
