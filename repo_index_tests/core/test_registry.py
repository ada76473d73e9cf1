from pathlib import Path

import pytest

from repo_index.core.source.registry import (
    RegistryError, RepoSpec, add_spec, load_registry, parse_registry, remove_spec, save_registry,
)


def entry(**kw):
    return {"name": "svc", "source": "/src/svc", **kw}


@pytest.mark.parametrize("name", ["", "Svc", "-svc", "svc-", "a..b", "../etc", "a/b", "a b", "x" * 64, 7, "svc\n", ".."])
def test_bad_names_are_refused_with_the_rule(name):
    with pytest.raises(RegistryError, match="invalid repository name"):
        parse_registry({"repositories": [entry(name=name)]})


@pytest.mark.parametrize("name", ["a", "svc", "my-service", "lib.core_v2", "0day"])
def test_good_names(name):
    assert parse_registry({"repositories": [entry(name=name)]})[0].name == name


def test_duplicate_names_are_refused():
    with pytest.raises(RegistryError, match="duplicate repository name 'svc'"):
        parse_registry({"repositories": [entry(), entry(source="/other")]})


@pytest.mark.parametrize("source", ["--upload-pack=touch /tmp/x", "ext::sh -c touch% /tmp/x", "ftp://host/repo.git",
                                    "http://host/repo.git", ""])
def test_dangerous_or_unsupported_sources_are_refused(source):
    with pytest.raises(RegistryError):
        parse_registry({"repositories": [entry(source=source)]})


@pytest.mark.parametrize("source", ["https://github.com/a/b.git", "git@github.com:a/b.git", "ssh://git@h/a/b",
                                    "file:///srv/git/b", "./relative/dir", "/abs/dir"])
def test_supported_sources(source):
    assert parse_registry({"repositories": [entry(source=source)]})[0].source == source


def test_unknown_field_and_missing_source_name_the_entry():
    with pytest.raises(RegistryError, match="repository 'svc': unknown field"):
        parse_registry({"repositories": [entry(branch="main")]})
    with pytest.raises(RegistryError, match="'name' and 'source' are required"):
        parse_registry({"repositories": [{"name": "svc"}]})


def test_round_trip_add_remove(tmp_path: Path):
    path = tmp_path / "repositories.yaml"
    assert load_registry(path) == []
    spec = RepoSpec("svc", "/src/svc", "v1.2", ("src/**",), ("*.lock",))
    save_registry(path, add_spec([], spec))
    assert load_registry(path) == [spec]
    with pytest.raises(RegistryError, match="already registered"):
        add_spec(load_registry(path), spec)
    moved = RepoSpec("svc", "/elsewhere")
    assert add_spec(load_registry(path), moved, replace=True) == [moved]
    assert remove_spec([spec], "svc") == []
    with pytest.raises(RegistryError, match="not registered"):
        remove_spec([spec], "nope")


def test_invalid_yaml_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "repositories.yaml"
    path.write_text("repositories: [name: x\n")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(path)
    path.write_text("- name: x\n")
    with pytest.raises(RegistryError, match="top-level 'repositories:'"):
        load_registry(path)


@pytest.mark.parametrize("source", ["https://user:ghp_secret123@github.com/a/b.git", "https://ghp_secret123@github.com/a/b.git"])
def test_credentials_in_a_url_are_refused_without_being_echoed(source):
    with pytest.raises(RegistryError, match="credential helper") as err:
        parse_registry({"repositories": [entry(source=source)]})
    assert "ghp_secret123" not in str(err.value)


@pytest.mark.parametrize("source", ["ssh://-oProxyCommand=touch%20x/repo", "git@-oProxyCommand:repo",
                                    "/path/with\nnewline", "repo\x00name", "https://host/a b.git", "fd::17/x",
                                    "transport::https://host/x"])
def test_option_like_hosts_control_characters_and_odd_urls_are_refused(source):
    with pytest.raises(RegistryError, match="refusing|unsupported"):
        parse_registry({"repositories": [entry(source=source)]})


@pytest.mark.parametrize("ref", ["--upload-pack=x", "-b", "a..b", "HEAD@{1}", "has space", "x\n", "a:b", "*"])
def test_bad_refs_are_refused(ref):
    with pytest.raises(RegistryError, match="'ref' must be"):
        parse_registry({"repositories": [entry(ref=ref)]})


@pytest.mark.parametrize("ref", ["main", "v1.2.3", "feature/x-y_z", "0a1b2c3d", "release-2024.01"])
def test_good_refs(ref):
    assert parse_registry({"repositories": [entry(ref=ref)]})[0].ref == ref


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path):
    from repo_index.core.atomic_files import atomic_writer

    target = tmp_path / "state.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as fh:
            fh.write(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["state.bin"]
    with atomic_writer(target) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_registry_yaml_is_read_strictly(tmp_path):
    import time

    path = tmp_path / "repositories.yaml"
    # Scalars stay the strings they were written as.
    path.write_text("repositories:\n  - name: svc\n    source: /src\n    ref: 0123456\n"
                    "  - name: dated\n    source: /src\n    ref: 2024-01-01\n")
    assert [s.ref for s in load_registry(path)] == ["0123456", "2024-01-01"]
    # An alias bomb is refused at once, naming the cause.
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(12)) + "repositories: []\n"
    path.write_text(bomb)
    started = time.monotonic()
    with pytest.raises(RegistryError, match="aliases"):
        load_registry(path)
    assert time.monotonic() - started < 2
    # A key written twice is an error, not "the last one wins".
    path.write_text("repositories:\n  - name: svc\n    source: /a\n    source: /b\n")
    with pytest.raises(RegistryError, match="duplicate key 'source'"):
        load_registry(path)
    # A file that is not UTF-8 is a message, not a traceback.
    path.write_bytes(b"repositories:\n  - name: svc\n    source: /caf\xe9\n")
    with pytest.raises(RegistryError, match="cannot be read"):
        load_registry(path)
