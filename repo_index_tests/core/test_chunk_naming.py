"""Chunks say what they hold (issue 17, item 3): `defines` lists every definition whose
first line a chunk holds, `symbol` is the first of them or the enclosing definition, and
the embedded header names them all within a third of the budget."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import repo_index
from repo_index.core.chunk.chunker import chunk_source
from repo_index.core.chunk.records import embedding_text
from repo_index.core.chunk.tokens import count_tokens, get_encoding
from repo_index_tests.core.invariants import check_chunks

ENC = get_encoding()
LONG_BODY = "\n".join(f"        x{i} = compute(alpha, beta, gamma, {i})" for i in range(40))
SMALL = "".join(f"    def m{i}(self):\n        return self._v{i}\n\n" for i in range(5))
SRC = f"import os\nimport sys\n\n\nclass Formatter:\n    def big(self):\n{LONG_BODY}\n\n{SMALL}"


def chunks_of(src: str, max_tokens: int, path: str = "fmt.py"):
    chunks = chunk_source(src, path, "python", max_tokens, ENC)
    check_chunks(src, chunks, max_tokens, ENC)
    return chunks


def header_line(c) -> str:
    return embedding_text(c.path, c.header, c.text).split("\n", 1)[0]


@pytest.mark.parametrize("max_tokens", [200, 512])
def test_a_chunk_of_small_methods_names_each(max_tokens):
    methods = [f"Formatter.m{i}" for i in range(5)]
    holder = next(c for c in chunks_of(SRC, max_tokens) if "def m0" in c.text)
    assert all(f"def m{i}" in holder.text for i in range(5)) and "class Formatter" not in holder.text
    assert holder.defines == ", ".join(methods)
    assert holder.symbol == "Formatter.m0"
    assert header_line(holder) == "# fmt.py > " + ", ".join(methods)


def test_a_piece_of_a_long_method_is_named_after_it():
    chunks = chunks_of(SRC, 64)
    pieces = [c for c in chunks if "x20 =" in c.text or "x30 =" in c.text]
    assert pieces and all("def big" not in c.text for c in pieces)
    for c in pieces:
        assert (c.symbol, c.defines, c.header) == ("Formatter.big", "", "Formatter.big")
    first = next(c for c in chunks if "def big" in c.text)
    assert first.symbol == "Formatter" and first.defines == "Formatter, Formatter.big"


def test_imports_alone_name_nothing():
    imports = next(c for c in chunks_of(SRC, 64) if "import os" in c.text)
    assert "class" not in imports.text
    assert (imports.symbol, imports.defines, imports.header) == ("", "", "")
    assert header_line(imports) == "# fmt.py"


def test_a_class_that_fits_whole_names_its_methods():
    src = "class Small:\n" + SMALL
    (only,) = chunks_of(src, 512)
    assert only.symbol == "Small"
    assert only.defines == "Small, " + ", ".join(f"Small.m{i}" for i in range(5))


@pytest.mark.parametrize("max_tokens", [40, 64])
def test_small_budgets_keep_the_cap_with_many_definitions(max_tokens):
    # Dozens of one-line functions with long names: the names do not fit a third of the
    # budget, so the header keeps the first ones and counts the rest.
    src = "".join(f"def handler_number_{i}_for_requests(): pass\n" for i in range(60))
    src += "".join(f"def f{i}(): pass\n" for i in range(60))
    chunks = chunks_of(src, max_tokens, path="pkg/handlers.py")
    more = 0
    for c in chunks:
        assert count_tokens(embedding_text(c.path, c.header, c.text), ENC) == c.n_tokens <= max_tokens
        assert count_tokens(header_line(c), ENC) + 1 <= max_tokens // 3
        names = c.defines.split(", ")
        assert c.symbol == names[0] and len(names) == c.text.count("def ")
        dropped = re.fullmatch(r"(.*) \+(\d+) more", c.header)
        if not c.header:  # not even the first name fits beside this path
            assert count_tokens(embedding_text(c.path, names[0], ""), ENC) > max_tokens // 3
        elif dropped:
            more += 1
            shown = dropped[1].split(", ")
            assert shown == names[:len(shown)] and len(shown) + int(dropped[2]) == len(names)
        else:
            assert c.header == c.defines
    assert more, "some chunk holds more names than its header has room for"


def test_the_chunker_fingerprint_covers_naming(tmp_path):
    """A stored chunk table is reused only under the same fingerprint: a change of how
    chunks are named re-chunks."""
    def fingerprint() -> str:
        code = "from repo_index.core.chunk.table import chunker_fingerprint; print(chunker_fingerprint())"
        return subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()

    copy = tmp_path / "repo_index"
    shutil.copytree(Path(repo_index.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = fingerprint()
    for module in ("naming.py", "definitions.py"):
        path = copy / "core" / "chunk" / module
        path.write_text(path.read_text() + "\n# changed\n")
        after = fingerprint()
        assert after != before, module
        before = after
