"""Hostile and odd input: one real git repository full of it, discovered and chunked the way
the pipeline does. Every file ends chunked or skipped with its reason counted; no file
crashes the run, none is silently dropped, nothing outside the tree is read."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from repo_index.core.chunk import languages
from repo_index.core.source.discovery import discover
from repo_index.core.source.registry import RepoSpec
from repo_index.core.chunk.repository import chunk_files, chunk_shard
from repo_index.core.source.git import resolve_source
from repo_index.core.chunk.tokens import get_encoding
from repo_index_tests.core.invariants import check_chunks
from repo_index_tests.gitutil import git, make_repo

MAX_TOKENS = 256
DEPTH = 5000
AWS_KEY = "AKIAZ7QW3ERT5YUI2OPA"
GITHUB_TOKEN = "ghp_" + "x7K2mQ9vL4pR8sT1wY6zB3nC5dF0gH2jK4lM"
PEM = ("-----BEGIN RSA PRIVATE KEY-----\n" + "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM2Y1Tq0ZfA3e9kKz2oB7P6b9Lx0Q\n" * 3
       + "kq9w==\n-----END RSA PRIVATE KEY-----")
PEM_BODY = "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM2Y1Tq0ZfA3e9kKz2oB7P6b9Lx0Q"

SETTINGS_PY = f'''"""Settings someone committed with credentials in them."""
AWS_ACCESS_KEY_ID = "{AWS_KEY}"
GITHUB_TOKEN = "{GITHUB_TOKEN}"
SIGNING_KEY = """{PEM}"""


def after_the_key():
    return "line numbers still right"
'''

# path -> content, committed. Comments give the expected outcome.
COMMITTED: dict[str, str | bytes] = {
    "src/app.py": "def main():\n    return run()\n\n\ndef run():\n    return 1\n",  # indexed
    "src/settings.py": SETTINGS_PY,  # indexed, secrets redacted
    "src/bom.py": "\ufeffdef with_bom():\n    return 1\n",  # UTF-8 BOM: indexed
    "src/crlf.py": "def a():\r\n    return 1\r\n\r\n\r\ndef b():\r\n    return 2\r\n",  # CRLF: indexed
    "src/cr.py": "x = 1\ry = 2\rz = 3\r",  # lone CR: indexed
    "src/win.ps1": "function Get-Thing {\r\n    return 1\r\n}\r\n".encode("utf-16"),  # UTF-16 + BOM: indexed
    "src/deep.py": "x = " + "[\n" * DEPTH + "]\n" * DEPTH,  # thousands of levels of brackets
    "src/deep.json": "{\"a\":\n" * DEPTH + "1\n" + "}\n" * DEPTH,
    "src/broken.py": "def f(:\n    return ((\nclass\n  x = ]\n\ndef g():\n    return 2\n",  # syntax errors
    "src/my file.py": "def spaced():\n    pass\n",  # names with spaces, unicode, a newline
    "src/ünïcødé_模块.py": "def unicode_name():\n    pass\n",
    "src/new\nline.py": "def newline_in_name():\n    pass\n",
    "img/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),  # binary
    "data/blob.txt": b"text, then\x00a NUL\n",  # binary
    "legacy/latin1.c": "/* caf\xe9 */\nint x;\n".encode("latin-1"),  # not_utf8
    "legacy/mixed.txt": "utf-8 \u00e9 then ".encode() + "latin-1 \xe9\n".encode("latin-1"),  # not_utf8
    "empty.py": "",  # empty
    "blank.md": "  \n\n\t\n",  # empty
    "web/bundle.js": "var a=1;" * (2_000_000 // 8),  # a 2 MB single line: too_large
    "web/small.bundle.js": "var b=2;" * 60_000,  # a 480 KB single line: minified_or_generated
    "web/app.min.js": "var c=3;",  # minified_or_generated (name)
    "package-lock.json": "{}\n",  # minified_or_generated (name)
    "proto/api_pb2.py": "x = 1\n",  # minified_or_generated (name)
    ".gitattributes": "generated/** linguist-generated\nthird_party/** linguist-vendored\n"
                      "generated/handwritten.py -linguist-generated\n",
    "generated/client.py": "def generated():\n    pass\n",  # linguist_generated
    "generated/handwritten.py": "def handwritten():\n    pass\n",  # indexed: unset by a later line
    "third_party/lib.py": "def vendored():\n    pass\n",  # linguist_vendored
    "sub/.gitattributes": "*.txt linguist-generated\n",
    "sub/notes.txt": "generated notes\n",  # linguist_generated (nested .gitattributes)
    ".gitignore": "*.log\nignored_dir/\n",
    "keep/.gitignore": "!important.log\n",
    "keep/important.log": "re-included by a deeper .gitignore\n",  # indexed
    ".env": "OPENAI_API_KEY=sk-should-never-leave\n",  # secret_looking
    ".env.production": "DB_PASSWORD=hunter2\n",  # secret_looking
    "deploy/id_rsa": PEM + "\n",  # secret_looking
    "certs/server.pem": PEM + "\n",  # secret_looking
    "config/.aws/credentials": f"[default]\naws_access_key_id = {AWS_KEY}\n",  # secret_looking
    "infra/terraform.tfstate": "{\"secret\": 1}\n",  # secret_looking
    "assets/model.bin": "version https://git-lfs.github.com/spec/v1\noid sha256:" + "4d" * 32 + "\nsize 52428800\n",
    "node_modules/left-pad/index.js": "module.exports = 1\n",  # pruned: default_excluded
    "vendor/lib.go": "package lib\n",  # pruned: default_excluded
}
# Symlinks, committed as such (git stores the link, not the target).
SYMLINKS = {
    "link_inside.py": "src/app.py",  # symlink: its target is indexed under its own path
    "dir_loop": ".",  # symlink (a directory link back to the root: never followed)
    "loop_a": "loop_b", "loop_b": "loop_a",  # broken_symlink: a loop
    "dangling.py": "nowhere.py",  # broken_symlink
}
EXPECTED_FILES = sorted([
    ".gitattributes", ".gitignore", ".gitmodules", "generated/handwritten.py", "keep/.gitignore",
    "keep/important.log", "src/app.py", "src/bom.py", "src/broken.py", "src/cr.py", "src/crlf.py",
    "src/deep.json", "src/deep.py", "src/my file.py", "src/new\nline.py", "src/settings.py", "src/win.ps1",
    "src/ünïcødé_模块.py", "sub/.gitattributes",
])
EXPECTED_SKIPPED = {
    "binary": 2, "not_utf8": 2, "empty": 2, "too_large": 2, "minified_or_generated": 4, "linguist_generated": 2,
    "linguist_vendored": 1, "secret_looking": 6, "lfs_pointer": 1, "symlink": 2, "symlink_outside_tree": 2,
    "broken_symlink": 3, "not_regular_file": 2, "unsupported_name": 1, "gitignored": 1,
}
EXPECTED_PRUNED = {"default_excluded": 3, "submodule": 1, "gitignored": 1}


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def frame(found) -> pd.DataFrame:
    return pd.DataFrame([(f.path, f.language, f.size_bytes) for f in found.files],
                        columns=["path", "language", "size_bytes"])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    outside = base / "outside"
    write(outside, {"secret.py": "STOLEN = 'outside the tree'\n"})
    library = make_repo(base / "library", {"lib.py": "def in_a_submodule():\n    pass\n"})

    root = base / "repo"
    root.mkdir()
    write(root, COMMITTED)
    with open(os.path.join(os.fsencode(root), b"bad\xffname.py"), "wb") as fh:  # not UTF-8
        fh.write(b"x = 1\n")
    for name, target in SYMLINKS.items():
        os.symlink(target, root / name)
    os.symlink(outside / "secret.py", root / "link_out.py")  # symlink_outside_tree
    os.symlink(outside, root / "dir_out")  # symlink_outside_tree (a directory)
    git(root, "init", "-q")
    git(root, "-c", "protocol.file.allow=always", "submodule", "--quiet", "add", library.as_uri(), "libs/library")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "hostile")

    # Not committed (git cannot hold them, or they are ignored): still in the working tree.
    write(root, {"debug.log": "ignored\n", "ignored_dir/x.py": "ignored = 1\n"})
    os.mkfifo(root / "pipe.py")  # not_regular_file: opening it would block
    (root / "fifo_rules").mkdir()
    os.mkfifo(root / "fifo_rules" / ".gitignore")  # counted, and never opened as rules
    huge = root / "dump.sql"  # 50 MB
    with open(huge, "wb") as fh:
        line = b"INSERT INTO t VALUES (1, 'a fairly ordinary row of a database dump');\n"
        for _ in range(50_000_000 // len(line) + 1):
            fh.write(line)

    tracemalloc.start()
    found = discover(root)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    table, result = chunk_files(root, frame(found), MAX_TOKENS, workers=1)
    return SimpleNamespace(root=root, base=base, found=found, peak=peak, table=table, result=result,
                           huge_bytes=huge.stat().st_size)


def chunks_of(hostile, path: str) -> pd.DataFrame:
    return hostile.table[hostile.table["path"] == path]


def test_every_file_is_indexed_or_skipped_with_its_reason(hostile):
    found = hostile.found
    assert [f.path for f in found.files] == EXPECTED_FILES
    assert dict(found.skipped) == EXPECTED_SKIPPED
    assert dict(found.pruned_dirs) == EXPECTED_PRUNED


def test_nothing_is_silently_dropped(hostile):
    """Every directory entry outside a pruned directory is a file record or a counted skip."""
    pruned = {p for examples in hostile.found.pruned_examples.values() for p in examples}
    entries = 0
    for dirpath, dirnames, filenames in os.walk(hostile.root):
        rel_dir = Path(dirpath).relative_to(hostile.root).as_posix()
        rel = lambda name: name if rel_dir == "." else f"{rel_dir}/{name}"  # noqa: E731
        dirnames[:] = [d for d in dirnames if rel(d) not in pruned]
        entries += len(filenames) + sum(os.path.islink(os.path.join(dirpath, d)) for d in dirnames)
    assert entries == len(hostile.found.files) + sum(hostile.found.skipped.values())
    assert sum(hostile.found.pruned_dirs.values()) == len(pruned)


def test_no_file_fails_to_chunk_and_every_indexed_file_has_chunks(hostile):
    assert dict(hostile.result.failed) == {}
    assert sorted(hostile.table["path"].unique()) == EXPECTED_FILES


def test_50_mb_file_is_skipped_without_being_read(hostile):
    assert hostile.huge_bytes > 50_000_000
    assert "dump.sql" in hostile.found.skipped_examples["too_large"]
    assert hostile.peak < 5_000_000, f"discovery peaked at {hostile.peak / 1e6:.1f} MB of Python memory"


def test_minified_bundles_are_skipped_by_content_and_size(hostile, tmp_path):
    assert hostile.found.skipped_examples["too_large"] == ["dump.sql", "web/bundle.js"]
    assert "web/small.bundle.js" in hostile.found.skipped_examples["minified_or_generated"]
    # With a limit that lets a 2 MB single-line bundle through, its content gives it away.
    write(tmp_path, {"bundle.js": COMMITTED["web/bundle.js"]})
    found = discover(tmp_path, max_file_bytes=3_000_000)
    assert found.files == [] and dict(found.skipped) == {"minified_or_generated": 1}


def test_deeply_nested_code_is_chunked_without_overflowing_the_stack(hostile):
    encoding = get_encoding("cl100k_base")
    for path, language in [("src/deep.py", "python"), ("src/deep.json", "json")]:
        chunks = chunk_shard(str(hostile.root), [(path, language)], MAX_TOKENS).chunks
        check_chunks(COMMITTED[path], chunks, MAX_TOKENS, encoding)  # all text, in order, within the cap


def test_syntax_errors_are_chunked_whole(hostile):
    chunks = chunk_shard(str(hostile.root), [("src/broken.py", "python")], MAX_TOKENS).chunks
    check_chunks(COMMITTED["src/broken.py"], chunks, MAX_TOKENS, get_encoding("cl100k_base"))


def test_bom_crlf_lone_cr_and_utf16_are_normalised_with_right_line_numbers(hostile):
    texts = "".join(hostile.table["text"])
    assert "\r" not in texts and "\ufeff" not in texts
    bom = chunks_of(hostile, "src/bom.py")
    assert bom["text"].iloc[0].startswith("def with_bom():")
    crlf = chunks_of(hostile, "src/crlf.py")
    assert crlf["text"].str.contains("def b").any()
    assert int(crlf["end_line"].max()) == 6  # CRLF counted once per line
    cr = chunks_of(hostile, "src/cr.py")
    assert cr["text"].iloc[0] == "x = 1\ny = 2\nz = 3" and int(cr["end_line"].max()) == 3
    assert "function Get-Thing" in chunks_of(hostile, "src/win.ps1")["text"].iloc[0]


def test_odd_names_are_indexed_and_non_utf8_names_skipped(hostile):
    assert {"src/my file.py", "src/ünïcødé_模块.py", "src/new\nline.py"} <= set(hostile.table["path"])
    # The chunk table survives JSON, as Chroma metadata and Dagster metadata need.
    rows = json.loads(hostile.table[["chunk_id", "path"]].to_json(orient="records"))
    assert {r["path"] for r in rows} == set(hostile.table["path"])
    assert hostile.found.skipped_examples["unsupported_name"] == [os.fsdecode(b"bad\xffname.py")]


def test_secrets_in_source_are_redacted_in_place_and_counted(hostile):
    settings = chunks_of(hostile, "src/settings.py")
    text = "\n".join(settings["text"])
    for secret in (AWS_KEY, GITHUB_TOKEN, PEM_BODY, "PRIVATE KEY"):
        assert secret not in "".join(hostile.table["text"])
    assert "[REDACTED:aws-access-key]" in text and "[REDACTED:github-token]" in text
    assert "[REDACTED:private-key]" in text
    # The placeholder keeps the key's line breaks: what follows is still on its own line number.
    chunk = settings[settings["text"].str.contains("def after_the_key")].iloc[0]
    line = int(chunk["start_line"]) + chunk["text"].splitlines().index("def after_the_key():")
    assert line == SETTINGS_PY.splitlines().index("def after_the_key():") + 1
    assert dict(hostile.result.redacted) == {"aws-access-key": 1, "github-token": 1, "private-key": 1}
    assert hostile.result.files_redacted == 1 and hostile.result.redacted_examples == ["src/settings.py"]


def test_symlinks_are_counted_and_never_followed_out_of_the_tree(hostile):
    skipped = hostile.found.skipped_examples
    assert sorted(skipped["symlink"]) == ["dir_loop", "link_inside.py"]
    assert sorted(skipped["symlink_outside_tree"]) == ["dir_out", "link_out.py"]
    assert sorted(skipped["broken_symlink"]) == ["dangling.py", "loop_a", "loop_b"]
    assert "outside the tree" not in "".join(hostile.table["text"])


def test_a_file_that_vanishes_or_changes_after_discovery_is_counted_not_fatal(tmp_path):
    write(tmp_path, {"ok.py": "def ok():\n    pass\n", "changed.py": "x = 1\n"})
    (tmp_path / "changed.py").write_bytes(b"caf\xe9\n")
    os.symlink("ok.py", tmp_path / "swapped.py")  # a symlink swapped in for a regular file
    result = chunk_shard(str(tmp_path), [("gone.py", "python"), ("changed.py", "python"), ("swapped.py", "python"),
                                         ("ok.py", "python")], MAX_TOKENS)
    assert [c.path for c in result.chunks] == ["ok.py"]
    assert dict(result.skipped) == {"unreadable": 1, "not_utf8": 1, "symlink": 1} and not result.failed


def test_files_changed_after_discovery_are_read_with_discoverys_checks(tmp_path):
    """Between repo_files and code_chunks a file grows past max_file_bytes, becomes a FIFO
    (one a writer holds open, too), a symlink out of the tree, or its folder does: each is
    counted under discovery's reason, none read, nothing blocks and the rest is chunked."""
    small = "def small():\n    return 1\n"  # 23 bytes, like the file in the issue
    write(tmp_path, {"grown.py": small, "fifo.py": small, "held.py": small, "link.py": small,
                     "conf/passwd": "user:x:1000:1000::/home/user:/bin/sh\n", "ok.py": small})
    found = discover(tmp_path)
    assert len(found.files) == 6
    with open(tmp_path / "grown.py", "a") as fh:  # 23 B -> 1.2 MB, above the 1 MB bound
        fh.write("x = 1\n" * 200_000)
    for name in ("fifo.py", "held.py"):
        (tmp_path / name).unlink()
        os.mkfifo(tmp_path / name)
    (tmp_path / "link.py").unlink()
    os.symlink("/etc/passwd", tmp_path / "link.py")
    shutil.rmtree(tmp_path / "conf")
    os.symlink("/etc", tmp_path / "conf")  # conf/passwd is now /etc/passwd
    writer = os.open(tmp_path / "held.py", os.O_RDWR | os.O_NONBLOCK)  # a writer that never writes
    try:
        result = chunk_shard(str(tmp_path), [(f.path, f.language) for f in found.files], MAX_TOKENS,
                             max_file_bytes=found.max_file_bytes)
    finally:
        os.close(writer)
    assert {c.path for c in result.chunks} == {"ok.py"}
    assert dict(result.skipped) == {"too_large": 1, "not_regular_file": 2, "symlink_outside_tree": 2}
    assert not result.failed
    assert "root:" not in "".join(c.text for c in result.chunks)


def test_a_clone_prunes_submodules_and_skips_lfs_pointers(hostile, tmp_path):
    tree = resolve_source(RepoSpec("hostile", hostile.root.as_uri()), tmp_path / "r.yaml", tmp_path / "cache")
    assert (tree.root / "libs/library").is_dir() and not any((tree.root / "libs/library").iterdir())
    found = discover(tree.root)
    assert found.pruned_examples["submodule"] == ["libs/library"]
    assert found.skipped_examples["lfs_pointer"] == ["assets/model.bin"]
    assert "src/new\nline.py" in [f.path for f in found.files]
    # What git holds of the tree is what the working tree held, minus what git cannot hold.
    assert [f.path for f in found.files] == EXPECTED_FILES
    assert "broken_symlink" in found.skipped and "symlink_outside_tree" in found.skipped


UNPRIVILEGED = 65534  # nobody


def test_unreadable_files_and_directories_are_counted(tmp_path):
    """Permissions bind only an unprivileged user: as root, discovery runs as nobody."""
    root = Path(tempfile.mkdtemp(prefix="repo-index-unreadable-"))  # outside root-only tmp dirs
    try:
        write(root, {"ok.py": "x = 1\n", "secret.py": "y = 2\n", "locked/inner.py": "z = 3\n"})
        for path in (root, root / "ok.py", root / "locked/inner.py"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (root / "secret.py").chmod(0o000)
        (root / "locked").chmod(0o000)
        script = ("import json, sys; from pathlib import Path; from repo_index.core.source.discovery import discover; "
                  "f = discover(Path(sys.argv[1])); "
                  "print(json.dumps([[r.path for r in f.files], f.skipped, f.pruned_dirs, f.pruned_examples]))")
        cmd = [sys.executable, "-c", script, str(root)]
        if os.geteuid() == 0:
            cmd = ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parents[2], env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        assert done.returncode == 0, done.stderr
        files, skipped, pruned, examples = json.loads(done.stdout)
        assert files == ["ok.py"]
        assert skipped == {"unreadable": 1}
        assert pruned == {"unreadable": 1} and examples == {"unreadable": ["locked"]}
    finally:
        (root / "locked").chmod(0o755)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_binary_like_text_in_a_markdown_file_is_chunked_with_its_text():
    # The Markdown scanner of tree-sitter-language-pack 0.13 corrupts memory on such text
    # (SIGSEGV/SIGBUS within a few thousand samples; "2\U000c42eb" alone did it). Run in a
    # child process, so a regression fails this test rather than killing the test run.
    script = (
        "import json, random\n"
        "from repo_index.core.chunk.chunker import chunk_source\n"
        "from repo_index.core.chunk.tokens import get_encoding\n"
        "enc, rng, lost = get_encoding('cl100k_base'), random.Random(3), 0\n"
        "pick = lambda: rng.choice([rng.randint(1, 127), rng.randint(1, 0xD7FF),\n"
        "                           rng.randint(0x10000, 0x10FFFF), ord(rng.choice('#`*-=>|\\n '))])\n"
        "for src in ['2\\U000c42eb'] + [''.join(chr(pick()) for _ in range(rng.randint(1, 300)))\n"
        "                                for _ in range(4000)]:\n"
        "    chunks = chunk_source(src, 'a.md', 'markdown', 64, enc)\n"
        "    lost += ''.join(''.join(c.text.split()) for c in chunks) != ''.join(src.split())\n"
        "print(json.dumps(lost))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert json.loads(done.stdout) == 0


# The TSX grammar (language pack and the official wheel alike) never returns on this.
TSX_LOOP = "(뇼)'\x04-[釭:$\x02\U0006e3a2-ࡧ-\x03"


@pytest.mark.timeout(120, method="thread")  # a regression loops in C, out of a signal's reach
def test_a_grammar_that_never_finishes_is_abandoned_and_the_file_cut_by_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(languages, "PARSE_SECONDS", 0.5)
    looping = "const a = 1;\n\nexport function f() {\n  return a;\n}\n" + TSX_LOOP + "\n"
    write(tmp_path, {"app/loop.tsx": looping, "app/ok.tsx": "export const B = () => <div>b</div>;\n"})
    result = chunk_shard(str(tmp_path), [("app/loop.tsx", "tsx"), ("app/ok.tsx", "tsx")], MAX_TOKENS)
    assert dict(result.by_lines) == {"parse_timeout": 1} and not result.failed
    assert result.examples["parse_timeout"] == ["app/loop.tsx: parser gave up after 0.5s"]
    check_chunks(looping, [c for c in result.chunks if c.path == "app/loop.tsx"], MAX_TOKENS, get_encoding("cl100k_base"))
    assert {c.language for c in result.chunks} == {"tsx"}
    assert set(result.file_sha256) == {"app/loop.tsx", "app/ok.tsx"}  # a reindex does not wait again
    # The parser halted mid-way is reset: the next file parses from its own start.
    parser = languages.get_parser("tsx")
    tree = languages.parse(parser, b"function g() { return 1; }\n")
    assert tree.root_node.children[0].type == "function_declaration" and not tree.root_node.has_error
