"""Checking a local folder for changes reads only what changed (the sensor does it every
tick), and never takes a changed file for an unchanged one."""

import os
import time
from pathlib import Path

from repo_index.core.source import discovery
from repo_index.core.source.registry import RepoSpec, save_registry
from repo_index.core.source.snapshot import current_version


def folder(tmp_path: Path, n: int) -> tuple[RepoSpec, Path]:
    root = tmp_path / "src"
    for i in range(n):
        path = root / "pkg" / f"mod_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"def f_{i}():\n    return {i}\n")
    (root / "blob.bin").write_bytes(b"\0\1\2" * 10)  # skipped by its bytes: that outcome is kept too
    past = time.time() - 60  # written a minute ago, not in the same clock tick as the check
    for path in root.rglob("*"):
        os.utime(path, (past, past))
    spec = RepoSpec("src", str(root))
    save_registry(tmp_path / "repositories.yaml", [spec])
    return spec, root


def count_reads(monkeypatch) -> list[str]:
    reads = []
    real = discovery.read_bounded

    def counting(fd, max_bytes):
        reads.append(fd)
        return real(fd, max_bytes)
    monkeypatch.setattr(discovery, "read_bounded", counting)
    return reads


def test_an_unchanged_folder_is_checked_without_reading_its_files(tmp_path, monkeypatch):
    spec, root = folder(tmp_path, 40)
    stats, registry = tmp_path / "stats" / "src.stats", tmp_path / "repositories.yaml"
    reads = count_reads(monkeypatch)
    first = current_version(spec, registry, stats_file=stats)
    assert len(reads) == 41
    reads.clear()
    assert current_version(spec, registry, stats_file=stats) == first
    assert reads == []
    # Without the stats the same fingerprint comes from reading everything.
    assert current_version(spec, registry) == first and len(reads) == 41

    (root / "pkg" / "mod_3.py").write_text("def f_3():\n    return 33\n")
    reads.clear()
    changed = current_version(spec, registry, stats_file=stats)
    assert changed != first and len(reads) == 1  # only the edited file is read


def test_an_edit_that_keeps_the_size_and_the_mtime_is_still_seen(tmp_path):
    spec, root = folder(tmp_path, 3)
    stats, registry = tmp_path / "stats" / "src.stats", tmp_path / "repositories.yaml"
    first = current_version(spec, registry, stats_file=stats)
    path = root / "pkg" / "mod_1.py"
    before = path.stat()
    path.write_text("def f_1():\n    return 9\n")  # same length
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # `touch -d` can put the mtime back...
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    # ...but not the ctime, which the cache compares too.
    assert current_version(spec, registry, stats_file=stats) == current_version(spec, registry) != first


def test_files_written_just_before_the_check_are_read_again(tmp_path, monkeypatch):
    """A file written within the clock tick of the check may change again without its stamp
    changing (git's racy entries): its outcome is not trusted on the next check."""
    spec, root = folder(tmp_path, 3)
    stats, registry = tmp_path / "stats" / "src.stats", tmp_path / "repositories.yaml"
    (root / "pkg" / "mod_0.py").write_text("def f_0():\n    return 100\n")  # mtime: now
    current_version(spec, registry, stats_file=stats)
    reads = count_reads(monkeypatch)
    current_version(spec, registry, stats_file=stats)
    assert len(reads) == 1


def test_damaged_stats_are_ignored(tmp_path):
    spec, _ = folder(tmp_path, 3)
    stats, registry = tmp_path / "stats" / "src.stats", tmp_path / "repositories.yaml"
    first = current_version(spec, registry, stats_file=stats)
    stats.write_bytes(stats.read_bytes()[:20])
    assert current_version(spec, registry, stats_file=stats) == first
