"""What packing works with: the items pending for a chunk, grouped.

Items carry labels (the definition they are, or are a piece of) for what packing decides
(which header may go down into a definition); what a chunk is named after is decided by
`naming`, from the file's definitions.
"""

from __future__ import annotations

# How an item labels the group it lands in, weakest first: a group keeps the strongest
# kind seen per label.
UNLABELLED = 0  # comments, decorators, text outside any definition
IN_SCOPE = 1  # a statement: labels the chunk with its enclosing scope
PART_OF_DEFINITION = 2  # a piece of the definition being split (its header, its body)
DEFINITION = 3  # a whole definition of its own

# What may still join a group that ends with the last piece of a split node; ordered, each
# admits less than the one before.
OPEN = 0  # anything
AFTER_SPLIT_STATEMENT = 1  # anything but a definition of its own
AFTER_SPLIT_DEFINITION = 2  # only the definition's own unnamed tokens (`}`, `;`)

Label = tuple[str, ...]  # breadcrumb names, outermost first


class Span:
    """A synthetic piece of source standing in for a syntax node: a blank-line separated
    `"block"`, a `"line"`, or a `"frag"` (a run of tokens of one line)."""

    __slots__ = ("start_byte", "end_byte", "kind")
    # Read where a tree-sitter node would be.
    is_named = False
    type = "span"

    def __init__(self, start: int, end: int, kind: str) -> None:
        self.start_byte, self.end_byte, self.kind = start, end, kind


# An item pending in a group: a node (or span) with its bytes, how it labels the chunk,
# and whether it attaches forward (a comment or decorator describes what follows it).
# A plain tuple read by these positions, not a record class: packing builds one per node,
# and a __slots__ class or NamedTuple made chunking ~1-2% slower.
PendingItem = tuple[int, int, int, "Label | None", bool]  # (start, end, kind, label, attaches)
START, END, KIND, LABEL, ATTACHES = range(5)


class Group:
    """Consecutive items that will become one chunk (unless the exact count says no)."""

    __slots__ = ("items", "scope", "labels", "has_definition", "closed", "start", "end")

    def __init__(self, scope: Label, start: int) -> None:
        self.items: list[PendingItem] = []
        self.scope = scope
        self.labels: dict[Label, int] = {}  # label -> strongest kind seen
        self.has_definition = False  # holds a whole definition
        self.closed = OPEN  # what may still join (set when it ends with a split node)
        self.start = start  # of its first item, moved back over the line's indentation
        self.end = 0

    def add(self, item: PendingItem) -> None:
        self.items.append(item)
        _, end, kind, label, _ = item
        if kind:
            labels = self.labels
            if labels.get(label, UNLABELLED) < kind:
                labels[label] = kind
            if kind == DEFINITION:
                self.has_definition = True
        if end > self.end:
            self.end = end

    def trailing_attached(self) -> int:
        """Index of the run of comments/decorators that ends the group (len if none)."""
        items = self.items
        k = len(items)
        while k > 0 and items[k - 1][ATTACHES]:
            k -= 1
        return k

    def rebuild(self) -> None:
        """Recompute labels and end after `items` was edited in place."""
        items = self.items
        self.items, self.labels, self.has_definition, self.end = [], {}, False, 0
        for item in items:
            self.add(item)

