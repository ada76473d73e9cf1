from pathlib import Path

import pytest

from repo_index.core.registry import RepoSpec
from repo_index.core.sources import SourceError, resolve_source
from repo_index_tests.gitutil import commit_files, git, make_repo


def test_local_directory_is_read_in_place(tmp_path: Path):
    src = make_repo(tmp_path / "src", {"a.py": "x = 1\n"})
    tree = resolve_source(RepoSpec("svc", str(src)), tmp_path / "repositories.yaml", tmp_path / "cache")
    assert tree.root == src.resolve() and tree.kind == "local"
    assert tree.commit == git(src, "rev-parse", "HEAD")
    assert not (tmp_path / "cache").exists()


def test_relative_source_is_taken_from_the_registry_folder(tmp_path: Path):
    (tmp_path / "code").mkdir()
    tree = resolve_source(RepoSpec("svc", "code"), tmp_path / "repositories.yaml", tmp_path / "cache")
    assert tree.root == (tmp_path / "code").resolve() and tree.commit is None


def test_missing_path_names_the_entry_and_the_fix(tmp_path: Path):
    with pytest.raises(SourceError, match=r"repository 'svc' \(source '/nope/x'\).*does not exist.*repo-index add"):
        resolve_source(RepoSpec("svc", "/nope/x"), tmp_path / "r.yaml", tmp_path / "cache")


def test_git_url_is_cloned_once_then_fetched_and_checked_out_at_ref(tmp_path: Path):
    upstream = make_repo(tmp_path / "upstream", {"a.py": "v = 1\n"})
    first = git(upstream, "rev-parse", "HEAD")
    git(upstream, "tag", "v1")
    second = commit_files(upstream, {"a.py": "v = 2\n", "b.py": "w = 1\n"}, "second")
    cache = tmp_path / "cache"
    url = upstream.as_uri()

    head = resolve_source(RepoSpec("svc", url), tmp_path / "r.yaml", cache)
    assert head.kind == "git" and head.commit == second
    assert (head.root / "b.py").exists() and (head.root / "a.py").read_text() == "v = 2\n"

    tagged = resolve_source(RepoSpec("svc", url, ref="v1"), tmp_path / "r.yaml", cache)
    assert tagged.commit == first and tagged.root == head.root
    assert not (tagged.root / "b.py").exists()

    third = commit_files(upstream, {"c.py": "z = 3\n"}, "third")
    again = resolve_source(RepoSpec("svc", url, ref="main"), tmp_path / "r.yaml", cache)
    assert again.commit == third and (again.root / "c.py").exists()

    by_sha = resolve_source(RepoSpec("svc", url, ref=first[:10]), tmp_path / "r.yaml", cache)
    assert by_sha.commit == first


def test_local_path_with_ref_is_read_at_that_ref(tmp_path: Path):
    upstream = make_repo(tmp_path / "upstream", {"a.py": "v = 1\n"})
    git(upstream, "branch", "old")
    commit_files(upstream, {"a.py": "v = 2\n"}, "second")
    tree = resolve_source(RepoSpec("svc", str(upstream), ref="old"), tmp_path / "r.yaml", tmp_path / "cache")
    assert (tree.root / "a.py").read_text() == "v = 1\n"
    assert (upstream / "a.py").read_text() == "v = 2\n"  # the user's checkout is untouched


def test_unknown_ref_and_bad_url_fail_with_the_entry_name(tmp_path: Path):
    upstream = make_repo(tmp_path / "upstream", {"a.py": "v = 1\n"})
    with pytest.raises(SourceError, match="repository 'svc'.*ref 'nope' not found"):
        resolve_source(RepoSpec("svc", upstream.as_uri(), ref="nope"), tmp_path / "r.yaml", tmp_path / "cache")
    with pytest.raises(SourceError, match="repository 'gone'.*git clone failed"):
        resolve_source(RepoSpec("gone", (tmp_path / "missing").as_uri()), tmp_path / "r.yaml", tmp_path / "cache")
