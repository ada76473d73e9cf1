"""Packing a syntax tree into groups of items that fit the token budget.

Siblings are packed greedily, in order, up to the budget: small definitions, statements
and comments merge while they fit. A node too big alone is descended into and its
children packed the same way, under its name if it is a definition. What is pending goes
down with it: a header (`def f(x):`, `namespace a {`) into the first piece of the body;
before a definition of its own, only the comments/decorators/attributes right above it
(which otherwise move forward to the definition when it fits). A node that has no syntax
children to cut at (a long string or comment, or deeper than `MAX_DEPTH` levels of
oversized nesting) is split by lines, and a line by tokens (see `cuts`). Recursion is
bounded by `MAX_DEPTH`, so thousands of nested brackets cannot overflow the stack.
"""

from __future__ import annotations

from repo_index.core.chunk.cuts import children_with_gaps, indent_start, line_spans, split_span
from repo_index.core.chunk.groups import (
    AFTER_SPLIT_DEFINITION, AFTER_SPLIT_STATEMENT, DEFINITION, IN_SCOPE, OPEN,
    PART_OF_DEFINITION, START, UNLABELLED, Group, Label, Span)
from repo_index.core.chunk.languages import LanguageSpec, definition_name
from repo_index.core.chunk.naming import Namer

MAX_DEPTH = 64  # levels of oversized nesting descended before falling back to lines

# What a node type is to `Packer._classify`, cached per language (a dict lookup per node
# instead of several set lookups and a substring search).
_OTHER, _DEFINES, _WRAPS = 0, 1, 2  # wraps: `@dec def f`, `export const f = () =>`
_NODE_ROLES: dict[LanguageSpec, dict[str, tuple[int, bool]]] = {}


def _node_role(spec: LanguageSpec, node_type: str) -> tuple[int, bool]:
    """(role, attaches forward) of a node type."""
    if node_type in spec.definitions:
        role = _DEFINES
    elif node_type in spec.wrappers:
        role = _WRAPS
    else:
        role = _OTHER
    return role, "comment" in node_type or node_type in spec.attach_forward


class Packer:
    """Packs the nodes of one file (in `meter.data`) into groups."""

    def __init__(self, spec: LanguageSpec, namer: Namer) -> None:
        self.spec, self.namer, self.meter = spec, namer, namer.meter
        self.data = self.meter.data
        self.names = namer.defs.names  # definition names, read once per file
        self.roles = _NODE_ROLES.setdefault(spec, {})
        # (node, its children_with_gaps), as last computed by _has_syntax_children.
        self._last_children: tuple | None = None

    def pack(self, items, scope: Label, owner: Label | None, depth: int,
             cur: Group | None = None) -> list[Group]:
        """Greedy split/merge of sibling items into groups that fit the budget; `cur` is
        a group carried in from the parent level (a header, or comments above). `owner`
        is the definition being split, if any."""
        out: list[Group] = []
        spec, meter, next_scope = self.spec, self.meter, None
        sticky = spec.sticky
        # Hot loop (once per node): `namer.fits` inlined, locals for lookups. Most fit
        # tests pass with room for the longest header line, so the names go uncounted.
        through, max_tokens, namer = meter.tokens_through, meter.max_tokens, self.namer
        room = max_tokens - namer.top
        data, newlines = self.data, meter.newlines
        for node in items:
            if next_scope is not None:
                scope, next_scope = next_scope, None
            start, end = node.start_byte, node.end_byte
            if end <= start:
                continue
            kind, label, attaches, wrapper = self._classify(node, scope, owner)
            if kind == DEFINITION and sticky and node.type in sticky and \
                    node.child_by_field_name("body") is None:
                next_scope = label  # `namespace A.B;` scopes the rest of the file
            # The node of the definition being split (`export` > `const f` > `f = () =>`)
            # is a piece of it, not a definition of its own.
            own_def = kind == DEFINITION and label != owner
            item_kind = kind if own_def or kind != DEFINITION else PART_OF_DEFINITION
            item = (start, end, item_kind, label, attaches)  # a groups.PendingItem

            if cur is not None and (cur.closed == OPEN or not own_def and (
                    cur.closed == AFTER_SPLIT_STATEMENT or not node.is_named)):
                a = cur.start
                estimate = through[end - 1] - through[a] + 1 if end > a else 0
                if estimate <= room or estimate + namer.estimate(a, end) <= max_tokens:
                    cur.add(item)
                    continue

            # Pending items that may go down into this node's first piece: a header
            # (`def f(x):`) or statements, never whole definitions.
            carry_all = (cur is not None and not own_def and not cur.has_definition
                         and cur.closed != AFTER_SPLIT_DEFINITION)
            # Only the header of the enclosing definition (`namespace a {`, `class A:`)
            # may go down into a definition of its own.
            carry_header = (own_def and cur is not None and not cur.has_definition
                            and cur.closed != AFTER_SPLIT_DEFINITION and bool(cur.labels)
                            and all(k == PART_OF_DEFINITION for k in cur.labels.values()))
            group_start = indent_start(data, newlines, start)
            if namer.fits(group_start, end):
                # It fits alone. Still descend into it to keep a header (`int main(void)`)
                # with the start of its body, rather than cut mid-line or leave the header
                # alone.
                # (Cheap test first: _has_syntax_children walks the node's children.)
                if not (carry_all and (
                        meter.estimate_tokens(cur.start, cur.end) <= max_tokens // 2
                        or data.find(b"\n", cur.end, start) < 0)
                        and self._has_syntax_children(node, depth)):
                    new = Group(scope, group_start)
                    new.add(item)
                    if cur is not None:
                        self._take_attached(cur, new)
                        out.append(cur)
                    cur = new
                    continue
            elif depth > 2 * MAX_DEPTH:
                # Cannot happen with sane estimates; the exact count when emitting splits it.
                if cur is not None:
                    out.append(cur)
                cur = Group(scope, group_start)
                cur.add(item)
                continue
            # Pack its children, scoped by it if it is a definition.
            if kind == DEFINITION:
                sub_scope, sub_owner = (scope if wrapper else label), label
            else:
                sub_scope, sub_owner = scope, owner
            budget = max_tokens - namer.label_tokens(sub_owner or sub_scope)
            carry = None
            if carry_all or carry_header:
                carry = cur
            elif cur is not None:
                carry = self._split_attached(cur)  # comments/decorators above a definition
                out.append(cur)
            if carry is not None:
                carry.closed = OPEN
            subs = self.pack(self._children(node, depth, budget), sub_scope, sub_owner,
                             depth + 1, carry)
            out.extend(subs[:-1])
            cur = subs[-1]
            # A split definition admits only its own closing tokens; a split statement
            # anything but a definition (the states are ordered, the stricter one wins).
            cur.closed = (AFTER_SPLIT_DEFINITION if own_def
                          else max(cur.closed, AFTER_SPLIT_STATEMENT))

        if cur is not None:
            out.append(cur)
        return [g for g in out if g.items]

    def _classify(self, node, scope: Label, owner: Label | None
                  ) -> tuple[int, Label | None, bool, bool]:
        """(label kind, label, attaches forward, is a wrapper) of one node or span."""
        if type(node) is Span:
            if owner is not None:
                return PART_OF_DEFINITION, owner, False, False
            return UNLABELLED, None, False, False
        node_type = node.type
        role = self.roles.get(node_type)
        if role is None:
            role = self.roles[node_type] = _node_role(self.spec, node_type)
        role, attaches = role
        if role == _DEFINES:
            name = self._name(node, node_type)
            if name:
                return DEFINITION, scope + (name,), False, False
        elif role == _WRAPS:
            name = self._wrapped_name(node)
            if name:
                return DEFINITION, scope + (name,), False, True
        if owner is not None:
            return PART_OF_DEFINITION, owner, attaches, False
        if not attaches and node.is_named:
            return IN_SCOPE, scope, False, False
        return UNLABELLED, None, attaches, False

    def _wrapped_name(self, node) -> str | None:
        # `@dec def f`, `export const f = () =>`, `template<..> class C`: the definition is
        # a child or grandchild.
        frontier = [node]
        for _ in range(2):
            nxt = []
            for n in frontier:
                for child in n.named_children[:4]:
                    child_type = child.type
                    if child_type in self.spec.definitions:
                        name = self._name(child, child_type)
                        if name:
                            return name
                    nxt.append(child)
            frontier = nxt
        return None

    def _name(self, node, node_type: str) -> str | None:
        key = (node.start_byte, node_type)
        names = self.names
        return names[key] if key in names else definition_name(node, self.spec, self.data)

    def _children(self, node, depth: int, budget: int) -> list:
        """What to pack inside a node too big for the budget."""
        if type(node) is Span:
            return split_span(self.meter, node, budget)
        if depth < MAX_DEPTH and node.child_count:
            last = self._last_children
            children = (last[1] if last is not None and last[0] is node
                        else children_with_gaps(self.data, node.children,
                                                node.start_byte, node.end_byte))
            # When most of the text is not in any child (a string around its escape
            # sequences) the node is a leaf for our purposes: lines are better cut points
            # than escapes. A little uncovered text (error recovery) becomes spans.
            uncovered = sum(c.end_byte - c.start_byte for c in children if type(c) is Span)
            if children and 2 * uncovered < node.end_byte - node.start_byte:
                return children
        return line_spans(self.meter, node.start_byte, node.end_byte, budget)

    def _has_syntax_children(self, node, depth: int) -> bool:
        """Whether cutting inside `node` can still follow syntax (not lines or tokens)."""
        if type(node) is Span or depth >= MAX_DEPTH or not node.child_count:
            return False
        children = children_with_gaps(self.data, node.children, node.start_byte, node.end_byte)
        self._last_children = (node, children)  # `_children` of this node, next, reuses them
        return not any(type(c) is Span for c in children)

    def _split_attached(self, group: Group) -> Group | None:
        """Remove the trailing comments/decorators of `group` into a new group."""
        k = group.trailing_attached()
        if k == len(group.items):
            return None
        moved = Group(group.scope, indent_start(self.data, self.meter.newlines,
                                                group.items[k][START]))
        for item in group.items[k:]:
            moved.add(item)
        del group.items[k:]
        group.rebuild()
        return moved

    def _take_attached(self, prev: Group, nxt: Group) -> None:
        """Move comments/decorators at the end of `prev` to the start of `nxt` (they
        describe what follows) when that still fits."""
        k = prev.trailing_attached()
        if k == len(prev.items):
            return
        moved = prev.items[k:]
        new_start = indent_start(self.data, self.meter.newlines, moved[0][START])
        if not self.namer.fits(new_start, nxt.end):
            return
        del prev.items[k:]
        prev.rebuild()
        nxt.items[:0] = moved
        nxt.rebuild()
        nxt.start = new_start
