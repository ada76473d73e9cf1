"""code_chunks materialized by Dagster on a real directory: a reindex re-chunks only the
files that changed, reuses the stored chunks of the others, and ends with exactly the
table a from-scratch chunking gives."""

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from repo_index.assets.chunks import code_chunks
from repo_index.assets.files import repo_files
from repo_index.core.chunk.repository import chunk_repository
from repo_index.core.chunk.table import ChunkStore
from repo_index.core.source.registry import RepoSpec, save_registry
from repo_index.io_managers import ChunkTableIOManager
from repo_index.partitions import REPOSITORIES
from repo_index.resources import ChunkStoreResource, EmbedderResource, RegistryResource, RunLeaseResource

REPO = "svc"
AWS_KEY = "AKIA" + "Q3EGRXMPLE7TQ2ZV"  # a well-formed fake access key id


def module(i: int) -> str:
    return f'"""Module {i}."""\n\n\ndef handler_{i}(request):\n    return request.get("{i}")\n\n\n' \
        f"class Service{i}:\n    def run(self, x):\n        return x * {i}\n"


class Project:
    def __init__(self, tmp_path: Path):
        self.data = tmp_path / "data"
        self.store = ChunkStore(self.data / "code_chunks")
        self.root = tmp_path / "src"
        self.root.mkdir()
        for i in range(6):
            (self.root / f"m{i}.py").write_text(module(i))
        (self.root / "settings.py").write_text(f'KEY = "{AWS_KEY}"\n')
        self.registry = tmp_path / "repositories.yaml"
        save_registry(self.registry, [RepoSpec(REPO, str(self.root))])
        (tmp_path / "dagster").mkdir()
        self.instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
        self.instance.add_dynamic_partitions(REPOSITORIES, [REPO])

    def materialize(self, max_tokens: int = 200, only: str | None = None,
                    max_file_bytes: int | None = None) -> tuple[dict, list[str]]:
        """Both assets, or `only` one of them (code_chunks then reads the stored repo_files)."""
        store = ChunkStoreResource(folder=str(self.store.folder))
        ops = {}
        if only != "repo_files":
            ops["code_chunks"] = {"ops": {"split_files": {"config": {"max_tokens": max_tokens}}}}
        if only != "code_chunks" and max_file_bytes:
            ops["repo_files"] = {"config": {"max_file_bytes": max_file_bytes}}
        result = dg.materialize(
            [repo_files, code_chunks], instance=self.instance, partition_key=REPO,
            selection=[only] if only else None,
            resources={"registry": RegistryResource(path=str(self.registry), clones_dir=str(self.data / "sources")),
                       "embedder": EmbedderResource(provider="local"),
                       "chunk_store": store, "chunks_io_manager": ChunkTableIOManager(store=store),
                       "run_lease": RunLeaseResource(folder=str(self.data / "runs"))},
            run_config={"ops": ops},
        )
        if only == "repo_files":
            return {}, []
        [mat] = result.asset_materializations_for_node("code_chunks")
        steps = [e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]
        return {k: v.value for k, v in mat.metadata.items()}, steps

    def table(self) -> pd.DataFrame:
        return self.store.load(REPO).chunks

    def from_scratch(self, max_tokens: int = 200) -> pd.DataFrame:
        return chunk_repository(self.root, max_tokens=max_tokens, parallel=False)


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path)


def shards(steps: list[str]) -> list[str]:
    return [s for s in steps if "chunk_files_shard" in s]


@pytest.mark.parametrize("min_files_per_shard", [100, 2])
def test_reindex_rechunks_only_changed_files(project, monkeypatch, min_files_per_shard):
    # 100: this small repository is chunked by the collect step; 2: in mapped shard steps.
    monkeypatch.setattr("repo_index.assets.chunks.MIN_FILES_PER_SHARD", min_files_per_shard)
    first, steps = project.materialize()
    assert bool(shards(steps)) == (min_files_per_shard == 2)
    assert first["files"] == 7 and first["files_reused"] == 0 and first["files_chunked"] == 7
    assert first["secrets_redacted"] == {"aws-access-key": 1}
    pd.testing.assert_frame_equal(project.table(), project.from_scratch())

    # Unchanged: every file is reused, the one with a secret too: its count is carried from
    # the run that chunked it, so the redaction counts stay exact.
    again, steps = project.materialize()
    assert again["files_reused"] == 7 and again["files_chunked"] == 0 and shards(steps) == []
    assert again["secrets_redacted"] == first["secrets_redacted"] and again["chunks"] == first["chunks"]
    assert (again["files_with_secrets_redacted"], again["secrets_redacted_examples"]) == (1, ["settings.py"])
    pd.testing.assert_frame_equal(project.table(), project.from_scratch())

    # One edited, one added, one deleted: those are the only files chunked.
    (project.root / "m1.py").write_text(module(1).replace("return x * 1", "return x + 100"))
    (project.root / "m9.py").write_text(module(9))
    (project.root / "m2.py").unlink()
    edited, steps = project.materialize()
    assert bool(shards(steps)) == (min_files_per_shard == 2)
    assert edited["files_reused"] == 5 and edited["files_chunked"] == 2  # m1, m9
    assert edited["secrets_redacted"] == {"aws-access-key": 1}
    table = project.table()
    pd.testing.assert_frame_equal(table, project.from_scratch())
    assert "m2.py" not in set(table.path) and "return x + 100" in "".join(table.text)

    # The file with the secret edited (a second one): chunked again, counted anew.
    (project.root / "settings.py").write_text(f'KEY = "{AWS_KEY}"\nOTHER = "{AWS_KEY[:-1]}X"\n')
    edited, _ = project.materialize()
    assert edited["files_chunked"] == 1 and edited["secrets_redacted"] == {"aws-access-key": 2}
    assert project.materialize()[0]["secrets_redacted"] == {"aws-access-key": 2}  # and carried again
    pd.testing.assert_frame_equal(project.table(), project.from_scratch())


def test_a_new_budget_rechunks_everything(project):
    project.materialize(max_tokens=200)
    meta, _ = project.materialize(max_tokens=64)
    assert meta["files_reused"] == 0 and meta["max_tokens"] == 64
    pd.testing.assert_frame_equal(project.table(), project.from_scratch(64))


def test_a_lost_or_corrupt_table_means_chunking_again(project):
    project.materialize()
    project.store.path(REPO).write_bytes(b"not a pickle")
    meta, _ = project.materialize()
    assert meta["files_reused"] == 0 and meta["files_chunked"] == 7
    pd.testing.assert_frame_equal(project.table(), project.from_scratch())


@pytest.mark.parametrize("min_files_per_shard", [100, 2])
def test_files_that_change_after_repo_files_are_skipped_by_reason_not_read(project, monkeypatch,
                                                                           min_files_per_shard):
    # 100: read by the collect step; 2: by mapped shard steps (the bound travels in the shard).
    monkeypatch.setattr("repo_index.assets.chunks.MIN_FILES_PER_SHARD", min_files_per_shard)
    small = "def small():\n    return 1\n"
    for name in ("grown.py", "fifo.py", "link.py"):
        (project.root / name).write_text(small)
    (project.root / "conf").mkdir()
    (project.root / "conf" / "passwd").write_text("user:x:1000:1000::/home/user:/bin/sh\n")
    project.materialize(only="repo_files", max_file_bytes=1000)

    (project.root / "grown.py").write_text(small + "x = 1\n" * 10_000)  # 60 kB, above the 1 kB bound
    (project.root / "fifo.py").unlink()
    os.mkfifo(project.root / "fifo.py")
    (project.root / "link.py").unlink()
    os.symlink("/etc/passwd", project.root / "link.py")
    shutil.rmtree(project.root / "conf")
    os.symlink("/etc", project.root / "conf")  # conf/passwd is now /etc/passwd
    meta, steps = project.materialize(only="code_chunks")
    assert bool(shards(steps)) == (min_files_per_shard == 2)
    table = project.table()
    assert (sorted(set(table.path) - {"settings.py"}), "root:" in "".join(table.text)) == \
        ([f"m{i}.py" for i in range(6)], False)
    assert meta["files_skipped_by_reason"] == {"too_large": 1, "not_regular_file": 1, "symlink_outside_tree": 2}
    assert meta["files_failed_by_reason"] == {}


def test_a_reindex_reads_only_the_files_whose_stamps_changed(project, monkeypatch):
    """repo_files hashes a file again only when its size, times or inode moved (the stat
    cache the freshness check keeps); what it hands on is what reading every file gives."""
    from repo_index.core.source import discovery

    past = time.time() - 60  # stamps older than the cache's margin for same-tick edits
    for path in project.root.iterdir():
        os.utime(path, (past, past))
    project.materialize(only="repo_files")
    reads = []
    real = discovery.read_bounded
    monkeypatch.setattr(discovery, "read_bounded", lambda fd, *a, **k: reads.append(fd) or real(fd, *a, **k))
    project.materialize(only="repo_files")
    assert reads == []
    (project.root / "m1.py").write_text(module(1) + "\n\ndef added_later():\n    return 1\n")
    project.materialize()
    assert len(reads) == 1
    pd.testing.assert_frame_equal(project.table()[["chunk_id", "path", "text"]],
                                  project.from_scratch()[["chunk_id", "path", "text"]])
