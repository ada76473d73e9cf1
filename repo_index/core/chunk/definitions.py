"""Every definition of a file: where it starts and ends, and its qualified name.

What names a chunk (see `records`): the definitions whose first byte it holds, else the
innermost definition whose body holds its first byte. That is decided from the file's
definitions alone, not from how the packer happened to walk the tree, so a class that
fits whole in a chunk names its methods too.

The definition nodes are found by one tree-sitter query (in C) for the language's
definition node types, named by `languages.definition_name`, and qualified by the names
of the definitions around them, as the packer qualifies its labels (a definition without
a name qualifies nothing). A body-less "sticky" definition (C# `namespace A.B;`, PHP
`namespace App;`) qualifies what follows it up to the end of its parent.
"""

from __future__ import annotations

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
