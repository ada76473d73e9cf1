"""Shortcuts that must not change a chunk: definitions found from their keywords (`def`,
`class`) are exactly those the tree-sitter query over every node finds (same nodes, names,
nesting and qualified labels, on real stdlib packages and on text built to mislead a word
search), and header lines counted by summing their names' costs have the tokens of the
encoded line."""

from __future__ import annotations

import dataclasses
import sysconfig
from pathlib import Path

import pytest

from repo_index.core.chunk.chunker import chunk_source
from repo_index.core.chunk.definitions import Definitions, find_definitions
from repo_index.core.chunk.languages import get_parser, get_spec, parse
from repo_index.core.chunk.measure import TokenMeter
from repo_index.core.chunk.naming import Namer
from repo_index.core.chunk.records import embedding_text
from repo_index.core.chunk.tokens import count_tokens, get_encoding
from repo_index.core.source.content import decode_source
from repo_index_tests.core.invariants import check_chunks

ENC = get_encoding()
STDLIB = Path(sysconfig.get_paths()["stdlib"])
PYTHON = get_spec("python")
QUERY_ONLY = dataclasses.replace(PYTHON, keywords=frozenset())

MISLEADING = '''\
"""class Fake: def not_a_function(): pass"""
undef = define = classic = 1  # def in a comment; class too
s = f"{undef} def {classic!r} class"
b = b"def x(): pass"

def top(a, b=lambda: 0):
    class Inner(Base, metaclass=Meta):
        def method(self):
            def deeper():
                class Deepest:
                    async def go(self): ...
            return deeper
    return Inner

@decorator
class Décor:
    """A class whose name is not ASCII."""
    @property
    def ünï(self): return 1
    if TYPE_CHECKING:
        def only_typing(self): ...
    try:
        def in_try(self): ...
    except ImportError:
        def in_except(self): ...
    match self:
        case 1:
            def in_case(self): ...

async def coroutine(): await x
def\\
  continued(): pass
class NoBody: pass
'''


def snapshot(found: Definitions) -> tuple:
    return found.starts, found.ends, found.labels, found.parents, found.names


def both_ways(text: str) -> tuple[tuple, tuple, bool]:
    parser = get_parser("python")
    data = text.encode("utf-8")
    root = parse(parser, data).root_node
    by_keyword = snapshot(find_definitions(parser.language, root, PYTHON, data))
    by_query = snapshot(find_definitions(parser.language, root, QUERY_ONLY, data))
    return by_keyword, by_query, root.has_error


def test_misleading_text_finds_the_same_definitions():
    by_keyword, by_query, has_error = both_ways(MISLEADING)
    assert not has_error  # the keyword search is used, not the query
    assert by_keyword == by_query
    labels = [".".join(label) for label in by_keyword[2]]
    assert labels == ["top", "top.Inner", "top.Inner.method", "top.Inner.method.deeper",
                      "top.Inner.method.deeper.Deepest", "top.Inner.method.deeper.Deepest.go",
                      "Décor", "Décor.ünï", "Décor.only_typing", "Décor.in_try",
                      "Décor.in_except", "Décor.in_case", "coroutine", "continued", "NoBody"]


def test_a_tree_with_errors_gets_the_query():
    # `def` with its name missing: the query decides what is a definition.
    broken = MISLEADING + "\ndef (x):\n    class\n"
    by_keyword, by_query, has_error = both_ways(broken)
    assert has_error
    assert by_keyword == by_query


@pytest.mark.parametrize("package", ["logging", "email", "asyncio", "json", "concurrent"])
def test_stdlib_packages_find_the_same_definitions(package):
    checked = 0
    for path in sorted((STDLIB / package).rglob("*.py")):
        by_keyword, by_query, _ = both_ways(decode_source(path.read_bytes()))
        assert by_keyword == by_query, path
        checked += len(by_query[0])
    assert checked > 20  # the packages do hold definitions


@pytest.mark.parametrize("package", ["logging", "email", "asyncio", "concurrent"])
def test_header_lines_counted_by_sums_are_exact(package):
    """Where a header line's tokens are summed from its names' costs instead of encoded,
    the sum is the count of the encoded line: every run of up to 6 names of each file,
    with and without "+N more"."""
    parser = get_parser("python")
    summed = 0
    for path in sorted((STDLIB / package).rglob("*.py")):
        text = decode_source(path.read_bytes())
        data = text.encode("utf-8")
        defs = find_definitions(parser.language, parse(parser, data).root_node, PYTHON, data)
        namer = Namer(TokenMeter(text, f"{package}/{path.name}", 512, ENC, "."), defs)
        for lo in range(len(namer.names)):
            for hi in range(lo + 1, min(lo + 7, len(namer.names) + 1)):
                for more in (0, 3, 12):
                    n = namer._summed(lo, hi, more)
                    if n is None:
                        continue
                    header = ", ".join(namer.names[lo:hi]) + (f" +{more} more" if more else "")
                    line = embedding_text(namer.meter.path, header, "")
                    assert n == count_tokens(line, ENC), (path, line)
                    summed += 1
    assert summed > 100


def test_a_header_that_drops_names_is_counted_exactly():
    # Five nested names, a third of 64 tokens holds one: "+N more" is found by bisection,
    # each try counted by sums.
    src = ("class Alpha0 {\n  alpha0(x) {\nfunction alpha0(a, b) {\nclass Alpha0 {\n"
           "  alpha0(x) {\nlet alpha0 = alpha0 * 0;\n}\n}\nlet alpha0 = alpha0 * 0;\n}\n}\n}\n")
    chunks = chunk_source(src, "t.js", "javascript", 64, ENC)
    check_chunks(src, chunks, 64, ENC)  # n_tokens is the count of the embedded text
    assert any(c.header.endswith(" +2 more") for c in chunks)
