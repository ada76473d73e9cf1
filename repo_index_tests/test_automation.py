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


def test_sensor_adds_new_and_removes_deleted_entries(tmp_path: Path):
    registry_file = tmp_path / "repositories.yaml"
    with dg.instance_for_test() as instance:
        save_registry(registry_file, [RepoSpec("alpha", "/a"), RepoSpec("beta", "/b")])
        evaluate(instance, registry_file)
        assert sorted(instance.get_dynamic_partitions(REPOSITORIES)) == ["alpha", "beta"]

        save_registry(registry_file, [RepoSpec("beta", "/b"), RepoSpec("gamma", "/g")])
        evaluate(instance, registry_file)
        assert sorted(instance.get_dynamic_partitions(REPOSITORIES)) == ["beta", "gamma"]

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
    stored = tmp_path / "data" / "code_chunks" / "svc.pkl"  # where code_chunks keeps its table
    spans = tmp_path / "data" / "collection_spans" / "repo_index-svc.pkl"  # and vector_collection its spans
    for path in (stored, spans):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"state")
    cli(env, "remove", "svc")
    with open_instance(home) as instance:
        assert instance.get_dynamic_partitions(REPOSITORIES) == []
    assert not stored.exists() and not spans.exists()
    assert "svc" not in registry_file.read_text()
    assert "not registered" in cli(env, "index", "svc", ok=False)


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
