"""Definitions found from their keywords (`def`, `class`) are exactly those the tree-sitter
query over every node finds: same nodes, names, nesting and qualified labels, on real
stdlib packages and on text built to mislead a word search."""

from __future__ import annotations

import dataclasses
import sysconfig
from pathlib import Path

import pytest

from repo_index.core.chunk.definitions import Definitions, find_definitions
from repo_index.core.chunk.languages import get_parser, get_spec, parse
from repo_index.core.source.content import decode_source

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
