"""The instance the commands open (repo_index/instance.py): the project's dagster.yaml with
its SQLite event log keeping connections. What it writes is Dagster's own storage, read
as it stands by the UI, the daemon and `dagster` commands; it holds a bounded number of
files open; a dagster.yaml that names storage is left alone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from repo_index.core.settings import get_settings
from repo_index.instance import PooledSqliteEventLogStorage, open_instance

PROJECT = Path(__file__).resolve().parents[1]


@dg.asset
def tiny() -> int:
    return 1


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _materialize(instance) -> str:
    result = dg.materialize([tiny], instance=instance)
    assert result.success
    return result.run_id


def _as_dagster_reads(home: Path, run_id: str) -> tuple[int, int]:
    """(events of the run, materializations of `tiny`) through Dagster's own default storage."""
    with dg.DagsterInstance.from_config(str(home)) as plain:
        assert type(plain.event_log_storage).__name__ == "SqliteEventLogStorage"
        events = len(plain.all_logs(run_id))
        latest = plain.get_latest_materialization_event(dg.AssetKey("tiny"))
        return events, int(latest is not None and latest.run_id == run_id)


def _open_run_files(home: Path) -> set[str]:
    runs = str(home / "history" / "runs")
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(runs) and ".db" in target and "index.db" not in target:
            found.add(target.split(".db")[0])  # its -wal and -shm beside it; " (deleted)" once unlinked
    return found


def test_runs_written_through_it_are_what_dagster_reads(home):
    with open_instance(get_settings()) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        run_id = _materialize(instance)
        written = len(instance.all_logs(run_id))
    assert written > 10
    assert _as_dagster_reads(home, run_id) == (written, 1)


def test_a_process_that_runs_many_runs_keeps_few_files_open(home):
    with open_instance(get_settings()) as instance:
        for _ in range(PooledSqliteEventLogStorage.KEPT + 3):
            _materialize(instance)
        assert 0 < len(_open_run_files(home)) <= PooledSqliteEventLogStorage.KEPT


def test_a_wiped_instance_holds_no_deleted_file_and_stores_the_next_run(home):
    with open_instance(get_settings()) as instance:
        _materialize(instance)
        instance.wipe()  # `dagster run wipe`: the runs' files are deleted
        assert not _open_run_files(home)
        run_id = _materialize(instance)
        written = len(instance.all_logs(run_id))
    assert _as_dagster_reads(home, run_id) == (written, 1)


def test_a_dagster_yaml_naming_its_storage_is_used_as_it_stands(home, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (home / "dagster.yaml").write_text((PROJECT / "dagster.yaml").read_text()
                                       + f"\nstorage:\n  sqlite:\n    base_dir: {elsewhere}\n")
    with open_instance(get_settings()) as instance:
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        _materialize(instance)
    assert list((elsewhere / "history" / "runs").glob("*.db"))
