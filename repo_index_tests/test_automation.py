"""The registry sensor and the CLI keep the 'repositories' partitions equal to the file."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from repo_index.automation import registry_sensor
from repo_index.core.source.registry import RepoSpec, save_registry
from repo_index.partitions import REPOSITORIES
from repo_index.resources import RegistryResource

BIN = Path(sys.executable).parent


def open_instance(home: Path) -> dg.DagsterInstance:
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def registry_resource(registry_file: Path) -> RegistryResource:
    return RegistryResource(path=str(registry_file), clones_dir=str(registry_file.parent / "sources"))


def evaluate(instance, registry_file):
    context = dg.build_sensor_context(instance=instance, resources={"registry": registry_resource(registry_file)})
    result = registry_sensor(context)
    if isinstance(result, dg.SensorResult):  # apply as the daemon would
        for request in result.dynamic_partitions_requests:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            else:
                for key in request.partition_keys:
                    instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def stored_state(settings, name: str) -> dict[str, bool]:
    """Which of the pieces repo_index keeps for `name` exist."""
    from repo_index.core.chunk.table import ChunkStore
    from repo_index.core.embed.cache import VectorCache
    from repo_index.core.embed.stored import keys_path
    from repo_index.core.index.client import ChromaSettings, get_collection, open_client
    from repo_index.core.index.spans import spans_path
    from repo_index.core.source.stat_cache import stats_path

    chroma = ChromaSettings.from_settings(settings)
    with VectorCache(settings.embedding_cache_path()) as cache:
        refs = name in cache.owners()
    return {"collection": get_collection(open_client(chroma), chroma.collection_name(name)) is not None,
            "spans": spans_path(chroma, chroma.collection_name(name)).exists(),
            "chunk table": ChunkStore(settings.chunk_tables_dir()).path(name).exists(),
            "keys": keys_path(settings.embedding_keys_dir(), name).exists(), "cache refs": refs,
            "source stats": stats_path(settings.source_stats_dir(), name).exists()}


def store_state(settings, name: str) -> None:
    """Every piece of state an indexed repository has (contents do not matter here)."""
    import numpy as np

    from repo_index.core.embed.cache import VectorCache, text_key
    from repo_index.core.index.client import ChromaSettings, open_client

    chroma = ChromaSettings.from_settings(settings)
    open_client(chroma).create_collection(chroma.collection_name(name))
    for path in (chroma.spans_dir() / f"{chroma.collection_name(name)}.pkl",
                 settings.chunk_tables_dir() / f"{name}.pkl", settings.embedding_keys_dir() / "chunk_embeddings" / f"{name}.npz",
                 settings.source_stats_dir() / f"{name}.stats"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"state")
    with VectorCache(settings.embedding_cache_path()) as cache:
        key = text_key(f"text of {name}")
        cache.put_many("m", 4, [(key, np.ones(4, np.float32))])
        cache.reserve(name, "m", 4, [key])


def test_sensor_adds_new_and_removes_deleted_entries_and_forgets_their_index(tmp_path: Path, monkeypatch):
    from repo_index.core.settings import Settings

    monkeypatch.setenv("REPO_INDEX_DATA_DIR", str(tmp_path / "data"))
    settings = Settings.from_env()
    registry_file = tmp_path / "repositories.yaml"
    with dg.instance_for_test() as instance:
        save_registry(registry_file, [RepoSpec("alpha", "/a"), RepoSpec("beta", "/b")])
        evaluate(instance, registry_file)
        assert sorted(instance.get_dynamic_partitions(REPOSITORIES)) == ["alpha", "beta"]
        store_state(settings, "alpha")
        store_state(settings, "beta")

        # alpha's entry deleted by hand: the sensor forgets everything of it, and nothing of beta.
        save_registry(registry_file, [RepoSpec("beta", "/b"), RepoSpec("gamma", "/g")])
        evaluate(instance, registry_file)
        assert sorted(instance.get_dynamic_partitions(REPOSITORIES)) == ["beta", "gamma"]
        assert not any(stored_state(settings, "alpha").values()), stored_state(settings, "alpha")
        assert all(stored_state(settings, "beta").values())

        result = evaluate(instance, registry_file)
        assert isinstance(result, dg.SkipReason) and "in step" in result.skip_message


def test_sensor_skips_an_invalid_registry_with_the_reason(tmp_path: Path):
    registry_file = tmp_path / "repositories.yaml"
    registry_file.write_text("repositories:\n  - name: Bad Name\n    source: /x\n")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(REPOSITORIES, ["kept"])
        result = evaluate(instance, registry_file)
        assert isinstance(result, dg.SkipReason) and "invalid repository name" in result.skip_message
        assert instance.get_dynamic_partitions(REPOSITORIES) == ["kept"]  # nothing removed on a bad file


def test_a_missing_or_empty_registry_never_removes_partitions(tmp_path: Path):
    registry_file = tmp_path / "repositories.yaml"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(REPOSITORIES, ["alpha", "beta"])
        for state in ("missing", "", "# nothing yet\n", "repositories:\n"):
            if state == "missing":
                registry_file.unlink(missing_ok=True)
            else:
                registry_file.write_text(state)
            result = evaluate(instance, registry_file)
            assert isinstance(result, dg.SkipReason) and "partitions left as they are" in result.skip_message, state
            assert sorted(instance.get_dynamic_partitions(REPOSITORIES)) == ["alpha", "beta"], state
        # Only an explicit empty list says "none".
        registry_file.write_text("repositories: []\n")
        evaluate(instance, registry_file)
        assert instance.get_dynamic_partitions(REPOSITORIES) == []


def cli(env, *args, ok=True):
    done = subprocess.run([BIN / "repo-index", *args], env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_cli_add_list_remove_update_file_and_instance(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    registry_file = tmp_path / "repositories.yaml"
    env = {**os.environ, "DAGSTER_HOME": str(home), "REPO_INDEX_REGISTRY": str(registry_file),
           "REPO_INDEX_DATA_DIR": str(tmp_path / "data")}
    src = tmp_path / "code"
    src.mkdir()

    assert "registered svc" in cli(env, "add", "svc", str(src), "--include", "*.py", "--exclude", "tests/")
    assert "already registered" in cli(env, "add", "svc", str(src), ok=False)
    assert "does not exist" in cli(env, "add", "other", str(tmp_path / "missing"), ok=False)
    assert "invalid repository name" in cli(env, "add", "Not/Valid", str(src), ok=False)
    listing = cli(env, "list")
    assert "svc" in listing and "include=['*.py']" in listing

    with open_instance(home) as instance:
        assert instance.get_dynamic_partitions(REPOSITORIES) == ["svc"]
    from repo_index.core.settings import Settings

    settings = Settings(REPO_INDEX_DATA_DIR=str(tmp_path / "data"))
    store_state(settings, "svc")
    assert all(stored_state(settings, "svc").values())
    out = cli(env, "remove", "svc")
    assert "deleted: collection, collection spans, chunk table, embedding keys, source stats, cache references" in out
    with open_instance(home) as instance:
        assert instance.get_dynamic_partitions(REPOSITORIES) == []
    assert not any(stored_state(settings, "svc").values()), stored_state(settings, "svc")
    assert "svc" not in registry_file.read_text()
    assert "not registered" in cli(env, "index", "svc", ok=False)


def test_remove_of_an_entry_already_gone_deletes_what_it_left(tmp_path: Path):
    """An entry deleted from the file by hand (no sensor running) left its index behind:
    `remove` deletes it instead of answering "not registered"; a name that is no repository
    name never reaches a path."""
    from repo_index.core.settings import Settings

    home = tmp_path / "home"
    home.mkdir()
    registry_file = tmp_path / "repositories.yaml"
    env = {**os.environ, "DAGSTER_HOME": str(home), "REPO_INDEX_REGISTRY": str(registry_file),
           "REPO_INDEX_DATA_DIR": str(tmp_path / "data")}
    save_registry(registry_file, [])
    settings = Settings(REPO_INDEX_DATA_DIR=str(tmp_path / "data"))
    store_state(settings, "svc")
    out = cli(env, "remove", "svc")
    assert "svc was not registered; deleted what it had left behind" in out
    assert not any(stored_state(settings, "svc").values()), stored_state(settings, "svc")
    assert "not registered and nothing is stored" in cli(env, "remove", "svc", ok=False)
    outside = tmp_path / "victim.stats"
    outside.write_text("keep me")
    assert "invalid repository name" in cli(env, "remove", "../victim", ok=False)
    assert outside.exists()


def test_a_run_that_waited_for_a_remove_stops_before_writing_anything(tmp_path: Path, openai_server):
    """A run of a repository being removed waits for the remove's lease, then finds the
    entry gone and stops: it never writes state for a repository no longer registered."""
    from repo_index.core.run_lease import RepositoryLease
    from repo_index.core.settings import Settings
    from repo_index_tests.gitutil import make_repo
    from repo_index_tests.pipeline import materialize_args, project_env, register

    env = project_env(tmp_path, openai_server.base_url)
    register(env, "svc", make_repo(tmp_path / "svc", {"a.py": "def a():\n    return 1\n"}))
    settings = Settings(REPO_INDEX_DATA_DIR=env["REPO_INDEX_DATA_DIR"])
    lease = RepositoryLease(settings.run_leases_dir(), "svc")
    lease.acquire("forget-test", lambda run: False, is_run=False)  # what `remove` holds while it deletes
    run = subprocess.Popen(materialize_args("svc"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    try:
        waited = wait_for_text(tmp_path, run, "waiting for run forget-test")
        save_registry(Path(env["REPO_INDEX_REGISTRY"]), [])  # the remove unregisters it, then lets go
    finally:
        lease.release("forget-test")
    out = waited + run.communicate(timeout=300)[0]
    assert run.returncode != 0 and "not registered" in out, out
    assert not any(stored_state(settings, "svc").values()), stored_state(settings, "svc")
    assert not (settings.clones_dir() / "svc").exists()


def wait_for_text(tmp_path: Path, proc: subprocess.Popen, text: str, timeout: float = 180) -> str:
    """Read `proc`'s output until `text` appears (it keeps running)."""
    import selectors
    import time

    seen, deadline = "", time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    while text not in seen:
        assert time.monotonic() < deadline and proc.poll() is None, seen
        if selector.select(timeout=1):
            seen += proc.stdout.readline()
    return seen


def test_nightly_schedule_one_run_per_repository_with_stable_keys():
    import datetime

    from repo_index.automation import nightly_reindex

    with dg.instance_for_test() as instance:
        when = datetime.datetime(2026, 11, 23, 2, 0, tzinfo=datetime.timezone.utc)
        empty = nightly_reindex(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
        assert isinstance(empty, dg.SkipReason)

        instance.add_dynamic_partitions(REPOSITORIES, ["beta", "alpha"])
        requests = nightly_reindex(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
        again = nightly_reindex(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
        assert [(r.partition_key, r.run_key) for r in requests] == [
            ("alpha", "nightly-2026-11-23-alpha"), ("beta", "nightly-2026-11-23-beta")]
        assert [r.run_key for r in again] == [r.run_key for r in requests]


def test_source_change_sensor_requests_one_run_per_new_head(tmp_path: Path):
    from repo_index.automation import source_change_sensor
    from repo_index_tests.gitutil import commit_files, make_repo

    src = make_repo(tmp_path / "src", {"a.py": "x = 1\n"})
    first = commit_files(src, {"b.py": "y = 2\n"}, "second")
    registry_file = tmp_path / "repositories.yaml"
    save_registry(registry_file, [RepoSpec("svc", str(src)), RepoSpec("fresh", str(src))])

    def tick(instance):
        context = dg.build_sensor_context(instance=instance, resources={"registry": registry_resource(registry_file)})
        return source_change_sensor(context)

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(REPOSITORIES, ["svc", "fresh"])
        assert isinstance(tick(instance), dg.SkipReason)  # nothing indexed yet: not stale, just new
        instance.report_runless_asset_event(
            dg.AssetMaterialization("vector_collection", partition="svc", metadata={"commit": first}))
        assert isinstance(tick(instance), dg.SkipReason)  # indexed at the head

        moved = commit_files(src, {"c.py": "z = 3\n"}, "third")
        # A run that read the new head and then failed before the sync leaves it stale: the
        # indexed commit is the one the collection was synced to, not the one last read.
        instance.report_runless_asset_event(
            dg.AssetMaterialization("repo_files", partition="svc", metadata={"commit": moved}))
        result = tick(instance)
        assert [(r.partition_key, r.run_key) for r in result.run_requests] == [("svc", f"svc@{moved}")]

        # While that run is queued or running, ticks repeat its key (the daemon dedupes it);
        # once it failed, the head is retried under a new key, at most three times.
        def run_of(key: str, status: dg.DagsterRunStatus) -> None:
            from dagster._core.storage.dagster_run import DagsterRun
            from dagster._core.storage.tags import RUN_KEY_TAG

            instance.add_run(DagsterRun(job_name="index_repository", status=status,
                                        tags={RUN_KEY_TAG: key, "dagster/partition": "svc"}))

        run_of(f"svc@{moved}", dg.DagsterRunStatus.STARTED)
        assert [r.run_key for r in tick(instance).run_requests] == [f"svc@{moved}"]
        run_of(f"svc@{moved}", dg.DagsterRunStatus.FAILURE)  # the latest run of that key failed
        assert [r.run_key for r in tick(instance).run_requests] == [f"svc@{moved}#2"]
        run_of(f"svc@{moved}#2", dg.DagsterRunStatus.FAILURE)
        run_of(f"svc@{moved}#3", dg.DagsterRunStatus.CANCELED)
        assert isinstance(tick(instance), dg.SkipReason)  # attempts spent: wait for a new head


def test_a_failed_check_is_shown_with_its_reason():
    from repo_index.progress import RunSummary, format_summary

    summary = RunSummary("svc", success=True, run_id="abcdef123456",
                         checks={"ids_match_chunks": True, "smoke_query": False},
                         check_reasons={"smoke_query": "no chunk of Foo (a.py:1-9) among the top 5 for 'Foo': b.py:1-3 bar"})
    text = format_summary(summary)
    assert "smoke_query FAILED" in text and "no chunk of Foo (a.py:1-9)" in text


def test_the_summary_names_chunks_the_server_refused():
    from repo_index.progress import RunSummary, format_summary

    summary = RunSummary("svc", success=True, run_id="abcdef123456", metadata={"chunk_embeddings": {
        "embedded": 29, "refused": 1, "refused_examples": [
            {"path": "src/module_07.py", "start_line": 1, "end_line": 3, "chunk_id": "c7",
             "reason": "This model's maximum context length is 8191 tokens"}]}})
    text = format_summary(summary)
    assert "1 chunks refused by the embedding server, left out: src/module_07.py:1-3 (This model's" in text
    assert "refused" not in format_summary(RunSummary("svc", success=True, run_id="abcdef123456"))


def test_forgetting_waits_for_a_run_of_the_repository(tmp_path: Path):
    import pytest

    from repo_index.core.forget import forget_repository
    from repo_index.core.run_lease import LeaseBusy, RepositoryLease
    from repo_index.core.settings import Settings

    settings = Settings(REPO_INDEX_DATA_DIR=str(tmp_path / "data"))
    store_state(settings, "svc")
    running = {"run-1"}
    RepositoryLease(settings.run_leases_dir(), "svc").acquire("run-1", lambda run: run not in running)
    with pytest.raises(LeaseBusy, match="run-1"):  # a run is writing it: nothing is deleted under it
        forget_repository(settings, "svc", lambda run: run not in running, wait_s=0.2)
    assert all(stored_state(settings, "svc").values())
    running.clear()  # the run ended
    assert "collection" in forget_repository(settings, "svc", lambda run: run not in running, wait_s=0.2)
    assert not any(stored_state(settings, "svc").values())
