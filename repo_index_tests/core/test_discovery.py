import os
from pathlib import Path

from repo_index.core.discovery import decode_source, discover


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def test_every_file_is_indexed_or_counted_with_its_reason(tmp_path: Path):
    write(tmp_path, {
        "src/app.py": "def main():\n    return 1\n",
        "src/util.go": "package util\n",
        "README.md": "# Title\n",
        "logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00",
        "latin1.txt": "caf\xe9".encode("latin-1"),
        "empty.py": "",
        ".env": "API_KEY=abc\n",
        "keys/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\n",
        "web/app.min.js": "var a=1;",
        "package-lock.json": "{}",
        "node_modules/left-pad/index.js": "module.exports = 1\n",
        ".git/config": "[core]\n",
    })
    found = discover(tmp_path)
    assert [f.path for f in found.files] == ["README.md", "src/app.py", "src/util.go"]
    assert {f.path: f.language for f in found.files} == {"README.md": "markdown", "src/app.py": "python", "src/util.go": "go"}
    assert found.skipped == {"binary": 1, "not_utf8": 1, "empty": 1, "secret_looking": 2, "minified_or_generated": 2}
    assert found.pruned_dirs["default_excluded"] == 2
    assert "logo.png" in found.skipped_examples["binary"]


def test_gitignore_at_several_levels_with_negation(tmp_path: Path):
    write(tmp_path, {
        ".gitignore": "*.log\nbuild-out/\n",
        "a.log": "x\n",
        "keep/.gitignore": "!important.log\n*.tmp\n",
        "keep/important.log": "keep me\n",
        "keep/scratch.tmp": "x\n",
        "keep/code.py": "x = 1\n",
        "build-out/gen.py": "x = 2\n",
        "top.tmp": "not ignored at the top level\n",
    })
    found = discover(tmp_path)
    assert [f.path for f in found.files] == [".gitignore", "keep/.gitignore", "keep/code.py", "keep/important.log", "top.tmp"]
    assert found.skipped["gitignored"] == 2
    assert found.pruned_dirs["gitignored"] == 1


def test_include_and_exclude_globs(tmp_path: Path):
    write(tmp_path, {"src/a.py": "a = 1\n", "src/b.js": "b = 1\n", "tests/t.py": "t = 1\n", "docs/x.md": "# x\n"})
    found = discover(tmp_path, include=("*.py",), exclude=("tests/",))
    assert [f.path for f in found.files] == ["src/a.py"]
    assert found.skipped == {"not_included": 2}
    assert found.pruned_dirs["excluded"] == 1


def test_symlinks_never_leave_the_tree(tmp_path: Path):
    outside = tmp_path / "outside"
    write(outside, {"secret.py": "password = 1\n"})
    repo = tmp_path / "repo"
    write(repo, {"a.py": "a = 1\n"})
    os.symlink(outside / "secret.py", repo / "link.py")
    os.symlink(outside, repo / "linkdir")
    os.symlink(repo, repo / "loop")
    found = discover(repo)
    assert [f.path for f in found.files] == ["a.py"]
    assert found.skipped["symlink_outside_tree"] == 1
    assert found.skipped["symlink"] == 2


def test_too_large_and_minified(tmp_path: Path):
    write(tmp_path, {"big.py": "x = 1\n" * 1000, "bundle.js": "var a=1;" * 2000, "ok.py": "y = 2\n"})
    found = discover(tmp_path, max_file_bytes=5000)
    assert [f.path for f in found.files] == ["ok.py"]
    assert found.skipped == {"too_large": 2} or found.skipped == {"too_large": 1, "minified_or_generated": 1}


def test_decode_source_normalises_bom_and_line_ends():
    assert decode_source("\ufeffa\r\nb\rc\n".encode()) == "a\nb\nc\n"
