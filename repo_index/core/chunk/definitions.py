"""Every definition of a file: where it starts and ends, and its qualified name.

What names a chunk (see `records`): the definitions whose first byte it holds, else the
innermost definition whose body holds its first byte. That is decided from the file's
definitions alone, not from how the packer happened to walk the tree, so a class that
fits whole in a chunk names its methods too.

The definition nodes are found by one tree-sitter query (in C) for the language's
definition node types, or, for a language whose definitions all start with a keyword
(`LanguageSpec.keywords`: Python's `def`, `class`) and a tree without errors, from where
those words occur in the text: each occurrence is looked up in the tree, and its parent is
a definition when the word is that keyword token (not a name, a string or a comment). That
finds the same nodes (every definition has its keyword as a direct child) and costs a
third of the query, which visits every node (13% of chunking time on the stdlib). A
tree with errors may hold a definition whose keyword is missing: it gets the query.
They are named by `languages.definition_name`, and qualified by the names
of the definitions around them, as the packer qualifies its labels (a definition without
a name qualifies nothing). A body-less "sticky" definition (C# `namespace A.B;`, PHP
`namespace App;`) qualifies what follows it up to the end of its parent.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from functools import lru_cache

from tree_sitter import Language, Node, Query, QueryCursor

from repo_index.core.chunk.languages import LanguageSpec, definition_name


@lru_cache(maxsize=None)
def _query(language: Language, node_types: frozenset[str]) -> Query | None:
    """A query capturing every node of `node_types` the grammar knows (a spec may list
    types of a sibling grammar: JavaScript shares TypeScript's list)."""
    known = sorted(t for t in node_types if language.id_for_node_kind(t, True))
    if not known:
        return None
    return Query(language, "[" + " ".join(f"({t})" for t in known) + "] @definition")


@lru_cache(maxsize=None)
def _keyword_patterns(keywords: frozenset[str]) -> list[tuple[str, re.Pattern[bytes]]]:
    """One pattern per keyword: a literal first lets `re` search for it fast (an
    alternation or a leading `\\b` makes the search several times slower); what precedes
    it is left to the tree (`defined` is an identifier node, not a keyword)."""
    return [(k, re.compile(re.escape(k.encode()) + rb"\b")) for k in sorted(keywords)]


def _nodes_by_keyword(root: Node, spec: LanguageSpec, data: bytes) -> list[Node]:
    """The definition nodes under `root` (a tree without errors), from their keywords."""
    definitions, found = spec.definitions, []
    lookup = root.descendant_for_byte_range
    for keyword, pattern in _keyword_patterns(spec.keywords):
        for match in pattern.finditer(data):
            token = lookup(match.start(), match.end())
            if token is None or token.type != keyword:  # a name, a string, a comment
                continue
            parent = token.parent
            if parent is not None and parent.type in definitions:
                found.append(parent)
    return found


class Definitions:
    """The named definitions of one file, in order of their first byte."""

    __slots__ = ("starts", "ends", "labels", "parents", "names")

    def __init__(self) -> None:
        self.starts: list[int] = []  # first byte of each definition, ascending
        self.ends: list[int] = []  # how far it qualifies what it holds
        self.labels: list[tuple[str, ...]] = []  # qualified name, outermost first
        self.parents: list[int] = []  # index of the definition around it, -1 at top level
        # (first byte, node type) -> definition_name, None when it has none: the packer
        # looks names up here instead of reading them again.
        self.names: dict[tuple[int, str], str | None] = {}

    def between(self, a: int, b: int) -> range:
        """Indexes of the definitions whose first byte is in [a, b)."""
        starts = self.starts
        return range(bisect_left(starts, a), bisect_left(starts, b))

    def enclosing(self, pos: int) -> int:
        """Index of the innermost definition that holds byte `pos` (its first byte
        included), or -1."""
        i = bisect_right(self.starts, pos) - 1
        ends, parents = self.ends, self.parents
        while i >= 0 and ends[i] <= pos:
            i = parents[i]
        return i


def find_definitions(language: Language, root: Node, spec: LanguageSpec,
                     data: bytes) -> Definitions:
    """The named definitions under `root`, a tree of `data` parsed with `spec`'s grammar
    (`language`)."""
    found = Definitions()
    if spec.keywords and not root.has_error:
        nodes = _nodes_by_keyword(root, spec, data)
    else:
        query = _query(language, spec.definitions) if spec.definitions else None
        if query is None:
            return found
        nodes = QueryCursor(query).captures(root).get("definition", [])
    # Outer before inner when they start together (`export default class`).
    nodes.sort(key=lambda n: (n.start_byte, -n.end_byte))
    stack: list[int] = []  # indexes of the open definitions, innermost last
    starts, ends, labels, parents = found.starts, found.ends, found.labels, found.parents
    sticky, names = spec.sticky, found.names
    for node in nodes:
        start = node.start_byte
        while stack and ends[stack[-1]] <= start:
            stack.pop()
        node_type = node.type
        name = names[(start, node_type)] = definition_name(node, spec, data)
        if not name:
            continue
        end = node.end_byte
        if sticky and node_type in sticky and node.child_by_field_name("body") is None:
            parent = node.parent
            end = parent.end_byte if parent is not None else len(data)
        parent_index = stack[-1] if stack else -1
        starts.append(start)
        ends.append(end)
        labels.append((labels[parent_index] if parent_index >= 0 else ()) + (name,))
        parents.append(parent_index)
        stack.append(len(starts) - 1)
    return found
