"""A chunking step reads the files at the commit its run recorded, wherever it runs: on a
cluster the run's first step may have cloned the source on another machine, and this
machine's clone (if any) may be at another commit."""

from pathlib import Path

import dagster as dg
import yaml

from repo_index.assets.chunks import Shard, chunk_files_shard
from repo_index.core.chunk.table import chunk_params
from repo_index.resources import RegistryResource
from repo_index_tests.gitutil import commit_files, git, make_repo


def _shard(tmp_path: Path, commit: str) -> tuple[Shard, RegistryResource]:
    registry = tmp_path / "repositories.yaml"
    registry.write_text(yaml.safe_dump({"repositories": [{"name": "svc", "source": (tmp_path / "origin").as_uri()}]}))
    resource = RegistryResource(path=str(registry), clones_dir=str(tmp_path / "this-machine" / "sources"))
    # Where the first step read the files: another machine's clone, not here.
    shard = Shard(str(tmp_path / "other-machine" / "sources" / "svc"), "svc", commit,
                  chunk_params(200, "cl100k_base"), [("app.py", "python")], 1 << 20)
    return shard, resource


def _texts(shard: Shard, registry: RegistryResource) -> str:
    out = chunk_files_shard(dg.build_op_context(resources={"registry": registry}), shard=shard)
    assert not out.result.failed and not out.result.skipped, out.result.examples
    return "\n".join(c.text for c in out.result.chunks)


def test_a_shard_is_read_at_its_commit_on_a_machine_without_the_clone(tmp_path):
    origin = make_repo(tmp_path / "origin", {"app.py": "def recorded_version():\n    return 1\n"})
    recorded = git(origin, "rev-parse", "HEAD")
    commit_files(origin, {"app.py": "def newer_version():\n    return 2\n"}, "newer")
    shard, registry = _shard(tmp_path, recorded)
    text = _texts(shard, registry)
    assert "recorded_version" in text and "newer_version" not in text


def test_a_clone_left_at_another_commit_is_moved_to_the_shards(tmp_path):
    origin = make_repo(tmp_path / "origin", {"app.py": "def recorded_version():\n    return 1\n"})
    recorded = git(origin, "rev-parse", "HEAD")
    shard, registry = _shard(tmp_path, recorded)
    assert "recorded_version" in _texts(shard, registry)
    newer = commit_files(origin, {"app.py": "def newer_version():\n    return 2\n"}, "newer")
    # A later run here moved the clone on; this shard belongs to a run of the newer commit.
    later = Shard(shard.root, "svc", newer, shard.params, shard.files, shard.max_file_bytes)
    assert "newer_version" in _texts(later, registry)
    # ... and back: the older commit is in the clone already (no fetch needed).
    assert "recorded_version" in _texts(shard, registry)


def test_code_is_read_at_the_indexed_commit_on_a_machine_that_never_indexed_it(tmp_path):
    """A search server or worker of a cluster has no clone yet: `read_code` clones it."""
    from repo_index.core.source.at_commit import indexed_lines

    origin = make_repo(tmp_path / "origin", {"app.py": "def recorded_version():\n    return 1\n"})
    recorded = git(origin, "rev-parse", "HEAD")
    commit_files(origin, {"app.py": "def newer_version():\n    return 2\n"}, "newer")
    shard, registry = _shard(tmp_path, recorded)
    lines = indexed_lines(registry.spec("svc"), registry.file(), Path(registry.clones_dir), recorded, "app.py")
    assert lines.exact and lines.commit == recorded and "recorded_version" in lines.text
