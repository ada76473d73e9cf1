import os
import subprocess
import time
from pathlib import Path

import pytest

from repo_index.core.source import git as sources
from repo_index.core.source.registry import RepoSpec
from repo_index.core.source.git import SourceError, resolve_source
from repo_index.core.source.git import git as git_cmd
from repo_index.core.source.snapshot import current_version
from repo_index_tests.gitutil import commit_files, git, make_repo
from repo_index_tests.hostile_git import HttpsServer, untrusted_folder


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


def test_clone_and_checkout_run_no_hooks_even_when_the_user_config_sets_some(tmp_path: Path, monkeypatch):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    marker = tmp_path / "hook-ran"
    for name in ("post-checkout", "post-merge", "reference-transaction"):
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
        hook.chmod(0o755)
    config = tmp_path / "gitconfig"
    config.write_text(f"[core]\n\thooksPath = {hooks}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    upstream = make_repo(tmp_path / "upstream", {"a.py": "x = 1\n"})

    subprocess.run(["git", "clone", "-q", upstream.as_uri(), str(tmp_path / "plain")], check=True)
    assert marker.exists(), "the hook runs for a plain clone: this test can see it"
    marker.unlink()
    tree = resolve_source(RepoSpec("svc", upstream.as_uri()), tmp_path / "r.yaml", tmp_path / "cache")
    assert (tree.root / "a.py").exists()
    assert not marker.exists()
    commit_files(upstream, {"b.py": "y = 1\n"}, "second")
    marker.unlink()  # the upstream commit ran the user's hooks, as it should
    resolve_source(RepoSpec("svc", upstream.as_uri()), tmp_path / "r.yaml", tmp_path / "cache")  # fetch + checkout
    assert not marker.exists()


@pytest.mark.parametrize("url", ["ext::sh -c touch% {marker}", "--upload-pack=touch {marker}",
                                 "http://127.0.0.1:9/x.git", "git://127.0.0.1:9/x.git"])
def test_git_itself_refuses_helper_transports_options_and_plain_protocols(tmp_path: Path, url):
    """Beyond the registry's checks: git runs with only https, ssh and file allowed."""
    marker = tmp_path / "pwned"
    with pytest.raises(SourceError):
        git_cmd("ls-remote", "--", url.format(marker=marker), timeout=30)
    assert not marker.exists()


def test_a_hung_transport_is_killed_at_the_timeout_with_its_children(tmp_path: Path, monkeypatch):
    pidfile = tmp_path / "ssh.pid"
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 120\n")  # holds git's pipes open
    fake_ssh.chmod(0o755)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(fake_ssh))
    monkeypatch.setattr(sources, "GIT_TIMEOUT_S", 2)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"repository 'slow'.*git clone timed out after 2s"):
        resolve_source(RepoSpec("slow", "ssh://git@example.invalid/repo.git"), tmp_path / "r.yaml", tmp_path / "cache")
    assert time.monotonic() - started < 15
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(pid), "the transport outlived the timeout"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited, it only waits for a parent to reap it


def test_a_name_that_is_not_a_slug_never_becomes_a_path(tmp_path: Path):
    upstream = make_repo(tmp_path / "upstream", {"a.py": "x = 1\n"})
    with pytest.raises(SourceError, match="invalid repository name"):
        resolve_source(RepoSpec("../../escape", upstream.as_uri()), tmp_path / "r.yaml", tmp_path / "a" / "cache")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "a").exists()


def test_git_variables_of_the_callers_repository_do_not_redirect_ours(tmp_path: Path, monkeypatch):
    # `repo-index index` run from a hook of the user's own repository inherits GIT_DIR and
    # GIT_WORK_TREE: our clone and checkout must not touch that repository.
    mine = make_repo(tmp_path / "mine", {"work.py": "x = 1\n"})
    (mine / "staged.py").write_text("y = 2\n")
    git(mine, "add", "staged.py")
    head, status = git(mine, "rev-parse", "HEAD"), git(mine, "status", "--porcelain")
    upstream = make_repo(tmp_path / "upstream", {"a.py": "x = 1\n"})
    later = commit_files(upstream, {"b.py": "y = 1\n"}, "second")
    monkeypatch.setenv("GIT_DIR", str(mine / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(mine))
    monkeypatch.setenv("GIT_INDEX_FILE", str(mine / ".git" / "index"))

    tree = resolve_source(RepoSpec("svc", upstream.as_uri()), tmp_path / "r.yaml", tmp_path / "cache")
    assert tree.commit == later and (tree.root / "b.py").exists()
    local = resolve_source(RepoSpec("up", str(upstream)), tmp_path / "r.yaml", tmp_path / "cache")
    assert local.commit == later  # the registered folder's HEAD, not the caller's
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_WORK_TREE")
    monkeypatch.delenv("GIT_INDEX_FILE")
    assert git(mine, "rev-parse", "HEAD") == head and git(mine, "status", "--porcelain") == status


def test_a_clone_in_progress_never_deletes_another_repositorys_clone(tmp_path: Path):
    upstream = make_repo(tmp_path / "upstream", {"a.py": "x = 1\n"})
    other = resolve_source(RepoSpec("foo.partial", upstream.as_uri()), tmp_path / "r.yaml", tmp_path / "cache")
    resolve_source(RepoSpec("foo", upstream.as_uri()), tmp_path / "r.yaml", tmp_path / "cache")
    assert (other.root / "a.py").exists()  # "foo"'s temporary clone name is not "foo.partial"


def test_git_never_reads_the_config_of_the_folder_it_is_called_from(tmp_path: Path, monkeypatch):
    # `repo-index index` or `status` run inside someone else's download: its .git/config
    # rewrites our URL to another repository and names commands for git to run.
    real = make_repo(tmp_path / "real", {"a.py": "x = 1\n"})
    evil = make_repo(tmp_path / "evil", {"a.py": "x = 666\n"})
    marker = tmp_path / "pwned"
    caller = untrusted_folder(tmp_path / "download", marker, redirect=(real.as_uri(), evil.as_uri()))
    assert git(caller, "ls-remote", "--", real.as_uri(), "HEAD").split()[0] == git(evil, "rev-parse", "HEAD")
    assert marker.exists(), "plain git in that folder is redirected and runs the command: this test can see it"
    marker.unlink()

    monkeypatch.chdir(caller)
    spec = RepoSpec("svc", real.as_uri())
    assert sources.current_head(spec, tmp_path / "r.yaml") == git(real, "rev-parse", "HEAD")
    tree = resolve_source(spec, tmp_path / "r.yaml", tmp_path / "cache")
    assert tree.commit == git(real, "rev-parse", "HEAD") and (tree.root / "a.py").read_text() == "x = 1\n"
    later = commit_files(real, {"b.py": "y = 1\n"}, "second")
    assert resolve_source(spec, tmp_path / "r.yaml", tmp_path / "cache").commit == later  # fetch + checkout
    assert not marker.exists()


def test_a_registered_folder_whose_config_names_commands_runs_none(tmp_path: Path, monkeypatch):
    marker = tmp_path / "pwned"
    folder = untrusted_folder(tmp_path / "download", marker)
    head = git(folder, "rev-parse", "HEAD")
    git(folder, "status")
    assert marker.exists(), "git status runs its core.fsmonitor: this test can see it"
    marker.unlink()

    monkeypatch.chdir(folder)
    registry = tmp_path / "r.yaml"
    assert resolve_source(RepoSpec("dl", str(folder)), registry, tmp_path / "cache").commit == head
    assert current_version(RepoSpec("dl", str(folder)), registry) == head
    # With a ref the folder is cloned: git-upload-pack runs in it.
    assert resolve_source(RepoSpec("dl-main", str(folder), ref="main"), registry, tmp_path / "cache").commit == head
    assert not marker.exists()


def test_a_credential_helper_in_the_callers_folder_never_runs(tmp_path: Path, monkeypatch):
    marker = tmp_path / "pwned"
    caller = untrusted_folder(tmp_path / "download", marker)
    with HttpsServer(tmp_path) as server:
        subprocess.run(["git", "ls-remote", server.url], cwd=caller, capture_output=True,
                       env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, timeout=60)
        assert marker.exists(), "plain git in that folder asks its credential helper: this test can see it"
        marker.unlink()

        monkeypatch.chdir(caller)
        with pytest.raises(SourceError):  # the certificate is not trusted: the folder's sslVerify=false is not read
            sources.current_head(RepoSpec("private", server.url), tmp_path / "r.yaml")
        with pytest.raises(SourceError):
            resolve_source(RepoSpec("private", server.url), tmp_path / "r.yaml", tmp_path / "cache")
    assert not marker.exists()


def test_the_users_own_global_config_still_applies(tmp_path: Path, monkeypatch):
    # Credentials for private clones, mirrors and ssh keys live in ~/.gitconfig: the user's
    # own choices, kept. Here a global insteadOf sends a public URL to a local mirror.
    mirror = make_repo(tmp_path / "mirror", {"a.py": "x = 1\n"})
    config = tmp_path / "gitconfig"
    config.write_text(f'[url "{mirror.as_uri()}"]\n\tinsteadOf = https://git.example.invalid/svc.git\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    spec = RepoSpec("svc", "https://git.example.invalid/svc.git")
    assert sources.current_head(spec, tmp_path / "r.yaml") == git(mirror, "rev-parse", "HEAD")
    assert resolve_source(spec, tmp_path / "r.yaml", tmp_path / "cache").commit == git(mirror, "rev-parse", "HEAD")
