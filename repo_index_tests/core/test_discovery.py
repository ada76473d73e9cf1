import os
from pathlib import Path

import pytest

from repo_index.core.source.content import classify_bytes, decode_source
from repo_index.core.source.discovery import discover
from repo_index.core.source.ignore_rules import parse_gitattributes


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


def test_symlinks_are_never_followed_and_each_is_counted(tmp_path: Path):
    outside = tmp_path / "outside"
    write(outside, {"secret.py": "password = 1\n"})
    repo = tmp_path / "repo"
    write(repo, {"a.py": "a = 1\n", ".env": "TOKEN=x\n"})
    os.symlink(outside / "secret.py", repo / "link.py")
    os.symlink(outside, repo / "linkdir")
    os.symlink(repo, repo / "loop")
    os.symlink(".env", repo / "innocent.txt")  # in the tree, but its target is a secret
    os.symlink("b.py", repo / "c.py")
    os.symlink("c.py", repo / "b.py")  # a loop between two files
    os.symlink("missing.py", repo / "dangling.py")
    found = discover(repo)
    assert [f.path for f in found.files] == ["a.py"]
    assert found.skipped == {"symlink_outside_tree": 2, "symlink": 2, "broken_symlink": 3, "secret_looking": 1}
    assert sorted(found.skipped_examples["symlink"]) == ["innocent.txt", "loop"]


def test_gitattributes_linguist_generated_and_vendored_with_git_precedence(tmp_path: Path):
    write(tmp_path, {
        ".gitattributes": "# generated code\n*.gen.go linguist-generated\napi/** linguist-generated=true\n"
                          "third_party/** linguist-vendored\napi/keep.py -linguist-generated\n"
                          "docs/ linguist-generated\nlib/* linguist-generated\n",
        "a.gen.go": "package a\n", "deep/b.gen.go": "package b\n", "api/client.py": "x = 1\n",
        "api/keep.py": "y = 1\n", "third_party/lib.py": "z = 1\n", "docs/guide.md": "# Guide\n",
        "pkg/.gitattributes": "*.gen.go linguist-generated=false\n*.txt linguist-generated\n",
        "pkg/c.gen.go": "package c\n", "pkg/notes.txt": "notes\n",
        "lib/top.py": "t = 1\n", "lib/sub/inner.py": "i = 1\n",  # `lib/*`: the first only, as in git
    })
    found = discover(tmp_path)
    assert [f.path for f in found.files] == [".gitattributes", "api/keep.py", "docs/guide.md", "lib/sub/inner.py",
                                             "pkg/.gitattributes", "pkg/c.gen.go"]
    assert found.skipped == {"linguist_generated": 5, "linguist_vendored": 1}
    assert sorted(found.skipped_examples["linguist_generated"]) == [
        "a.gen.go", "api/client.py", "deep/b.gen.go", "lib/top.py", "pkg/notes.txt"]


def test_submodules_and_nested_repositories_are_pruned(tmp_path: Path):
    write(tmp_path, {
        ".gitmodules": '[submodule "libs/a"]\n\tpath = libs/a\n\turl = https://example.com/a.git\n',
        "libs/a/x.py": "x = 1\n",  # checked out, or an empty folder in a fresh clone
        "libs/b/.git": "gitdir: ../../.git/modules/b\n", "libs/b/y.py": "y = 1\n",  # a .git file
        "src/main.py": "m = 1\n",
        ".git": "gitdir: /elsewhere/.git/worktrees/x\n",  # the root is a worktree: its pointer is not code
    })
    found = discover(tmp_path)
    assert [f.path for f in found.files] == [".gitmodules", "src/main.py"]
    assert found.skipped == {"default_excluded": 1}
    assert found.pruned_dirs == {"submodule": 2}
    assert sorted(found.pruned_examples["submodule"]) == ["libs/a", "libs/b"]


def test_rules_files_that_are_not_small_regular_files_are_not_read(tmp_path: Path):
    write(tmp_path, {"a/x.py": "x = 1\n", "b/y.py": "y = 1\n"})
    os.mkfifo(tmp_path / "a" / ".gitignore")  # reading it would block forever
    (tmp_path / "b" / ".gitignore").write_text("*.py\n" + "#" * 2_000_000)  # too large to be read
    found = discover(tmp_path)
    assert [f.path for f in found.files] == ["a/x.py", "b/y.py"]
    assert found.skipped == {"not_regular_file": 1, "too_large": 1}


def test_too_large_and_minified(tmp_path: Path):
    write(tmp_path, {"big.py": "x = 1\n" * 1000, "bundle.js": "var a=1;" * 2000, "ok.py": "y = 2\n"})
    found = discover(tmp_path, max_file_bytes=5000)
    assert [f.path for f in found.files] == ["ok.py"]
    assert found.skipped == {"too_large": 2} or found.skipped == {"too_large": 1, "minified_or_generated": 1}


def test_decode_source_normalises_bom_and_line_ends():
    assert decode_source("\ufeffa\r\nb\rc\n".encode()) == "a\nb\nc\n"
    assert decode_source("a\r\nb\n".encode("utf-16")) == "a\nb\n"  # a BOM says which UTF-16


@pytest.mark.parametrize("data, reason", [
    (b"x = 1\n", None),
    ("\ufeffx = 1\n".encode(), None),
    ("x = 1\r\n".encode("utf-16"), None),
    ("x = 1\n".encode("utf-32"), None),
    (b"x = 1\n\x00\x01", "binary"),
    (b"\xff\xfex", "binary"),  # a UTF-16 BOM and an odd byte count
    ("caf\xe9\n".encode("latin-1"), "not_utf8"),
    ("ok \u00e9\n".encode() + b"\xe9\n", "not_utf8"),  # mixed: UTF-8, then one Latin-1 byte
    (b"", "empty"),
    (b" \n\t\n", "empty"),
    (b"var a=1;" * 500, "minified_or_generated"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 12345\n", "lfs_pointer"),
])
def test_classify_bytes(data, reason):
    assert classify_bytes(data) == reason


def test_gitattributes_parser_reads_only_the_skip_attributes():
    rules = parse_gitattributes(["*.js linguist-generated text eol=lf", "!neg linguist-generated", "a/ linguist-vendored",
                                 "b linguist-vendored=false -linguist-generated", "c !linguist-generated", "d -text"])
    assert [(pattern.pattern, values) for pattern, values in rules] == [
        ("*.js", {"linguist-generated": True}),
        ("b", {"linguist-vendored": False, "linguist-generated": False}),
        ("c", {"linguist-generated": False}),
    ]


def test_a_thousand_nested_folders_are_pruned_and_counted_not_a_crash(tmp_path):
    (tmp_path / "top.py").write_text("x = 1\n")
    deep = tmp_path
    for _ in range(1000):  # os.walk recursed once per level: RecursionError for the whole repository
        deep = deep / "d"
        deep.mkdir()
    (deep / "bottom.py").write_text("y = 2\n")
    try:
        found = discover(tmp_path)
        assert [f.path for f in found.files] == ["top.py"]
        assert found.pruned_dirs["too_deep"] == 1
        assert found.pruned_examples["too_deep"][0].count("/") == 100  # 100 levels kept
    finally:  # bottom up, one level at a time: pytest's own cleanup would recurse 1,000 deep
        (deep / "bottom.py").unlink()
        while deep != tmp_path:
            deep.rmdir()
            deep = deep.parent
