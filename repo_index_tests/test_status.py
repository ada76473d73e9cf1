"""Freshness that is true: what `repo-index status` (and the source-change sensor) compare
is the state the collection was synced to against the source's state now."""

import json
import subprocess
from pathlib import Path

import dagster as dg

from repo_index.core.index.client import ChromaSettings, open_client
from repo_index.core.source.git import resolve_source
from repo_index.core.source.registry import RepoSpec, save_registry
from repo_index.core.source.snapshot import current_version
from repo_index.status import repository_status
from repo_index_tests.gitutil import git, make_repo
from repo_index_tests.hostile_git import untrusted_folder
from repo_index_tests.pipeline import BIN, project_env, register


def indexed_at(instance, chroma: ChromaSettings, name: str, version: str, records: int) -> None:
    """What a successful run leaves: a collection, and vector_collection's recorded commit."""
    coll = open_client(chroma).get_or_create_collection(chroma.collection_name(name))
    coll.add(ids=[f"c{i}" for i in range(records)], embeddings=[[1.0, float(i)] for i in range(records)])
    instance.report_runless_asset_event(dg.AssetMaterialization("vector_collection", partition=name,
                                                                metadata={"commit": version}))
    instance.report_runless_asset_event(dg.AssetMaterialization("code_chunks", partition=name,
                                                                metadata={"chunks": records}))


def test_a_folder_inside_a_repository_is_known_by_its_content(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("REPO_INDEX_DATA_DIR", str(tmp_path / "data"))  # status keeps the folder's stats there
    outer = make_repo(tmp_path / "outer", {"pkg/a.py": "def a():\n    return 1\n", "other.py": "x = 1\n"})
    registry = tmp_path / "repositories.yaml"
    spec, root = RepoSpec("pkg", str(outer / "pkg")), RepoSpec("outer", str(outer))
    save_registry(registry, [spec, root])
    # The enclosing repository's HEAD says nothing about the folder (a stdlib folder used to
    # report the interpreter installation's repository): no commit, a content fingerprint.
    assert resolve_source(spec, registry, tmp_path / "clones").commit is None
    version = current_version(spec, registry)
    assert version.startswith("tree:")
    assert resolve_source(root, registry, tmp_path / "clones").commit == git(outer, "rev-parse", "HEAD")

    chroma = ChromaSettings(mode="embedded", path=str(tmp_path / "chroma"))
    with dg.instance_for_test() as instance:
        indexed_at(instance, chroma, "pkg", version, 2)
        [row] = repository_status(instance, [spec], registry, chroma)
        assert (row["indexed_commit"], row["head"], row["state"]) == (version, version, "in step")

        (outer / "pkg" / "a.py").write_text("def a():\n    return 2\n")  # an uncommitted edit
        [row] = repository_status(instance, [spec], registry, chroma)
        assert row["state"] == "stale: source has moved" and row["head"] != version


def test_status_run_inside_an_untrusted_folder_reports_the_real_head_and_runs_nothing(tmp_path: Path):
    real = make_repo(tmp_path / "real", {"a.py": "x = 1\n"})
    evil = make_repo(tmp_path / "evil", {"a.py": "x = 666\n"})
    marker = tmp_path / "pwned"
    caller = untrusted_folder(tmp_path / "download", marker, redirect=(real.as_uri(), evil.as_uri()))
    local = untrusted_folder(tmp_path / "local", marker)  # a registered folder with such a config too
    env = project_env(tmp_path, "http://127.0.0.1:9/v1")
    register(env, "svc", real.as_uri())
    register(env, "local", local)

    done = subprocess.run([BIN / "repo-index", "status", "--json"], cwd=caller, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    heads = {row["name"]: row["head"] for row in json.loads(done.stdout)}
    expected = {"svc": git(real, "rev-parse", "HEAD"), "local": git(local, "rev-parse", "HEAD")}
    assert (heads, marker.exists()) == (expected, False)


def test_a_run_that_failed_after_the_index_was_built_makes_it_stale(tmp_path: Path, monkeypatch):
    """The source has not moved, but the last run failed: what it was to bring in (a new
    chunk size, a model change, anything of the run's own) is not in the index."""
    from dagster._core.test_utils import create_run_for_test

    monkeypatch.setenv("REPO_INDEX_DATA_DIR", str(tmp_path / "data"))
    src = make_repo(tmp_path / "svc", {"a.py": "def a():\n    return 1\n"})
    registry = tmp_path / "repositories.yaml"
    spec = RepoSpec("svc", str(src))
    save_registry(registry, [spec])
    head = git(src, "rev-parse", "HEAD")
    chroma = ChromaSettings(mode="embedded", path=str(tmp_path / "chroma"))
    with dg.instance_for_test() as instance:
        indexed_at(instance, chroma, "svc", head, 1)
        other = create_run_for_test(instance, job_name="index_repository", tags={"dagster/partition": "other"})
        instance.report_run_failed(other)  # another repository's failure says nothing of this one
        [row] = repository_status(instance, [spec], registry, chroma)
        assert row["state"] == "in step"

        failed = create_run_for_test(instance, job_name="index_repository", tags={"dagster/partition": "svc"})
        instance.report_run_failed(failed)
        [row] = repository_status(instance, [spec], registry, chroma)
        assert row["state"].startswith(f"stale: run {failed.run_id[:8]} failed at ") and row["head"] == head

        indexed_at(instance, chroma, "svc", head, 1)  # a run that succeeded since
        [row] = repository_status(instance, [spec], registry, chroma)
        assert row["state"] == "in step"
