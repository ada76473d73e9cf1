"""What packing works with: the items pending for a chunk, grouped, and how a group is named.

Naming: a chunk is named after its most specific definition when every other name in it
is an enclosing one (a whole method, or a class header with its first method); otherwise
after what its contents share (several methods: the class; several top-level functions:
""). A piece of a split definition is named after that definition.
"""

from __future__ import annotations

# How an item labels the chunk it lands in, weakest first: a group keeps the strongest
# kind seen per label, and only PART_OF_DEFINITION or stronger can name a chunk after
# its most specific label (see `symbol_of_labels`).
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

    __slots__ = ("items", "scope", "labels", "has_definition", "closed", "start", "end",
                 "_symbol")

    def __init__(self, scope: Label, start: int) -> None:
        self.items: list[PendingItem] = []
        self.scope = scope
        self.labels: dict[Label, int] = {}  # label -> strongest kind seen
        self.has_definition = False  # holds a whole definition
        self.closed = OPEN  # what may still join (set when it ends with a split node)
        self.start = start  # of its first item, moved back over the line's indentation
        self.end = 0
        self._symbol: Label | None = None  # cache of symbol()

    def add(self, item: PendingItem, symbol: Label | None = None) -> None:
        """Append `item`; `symbol`, if given, is `symbol_with` for it (saves recomputing)."""
        self.items.append(item)
        _, end, kind, label, _ = item
        if kind:
            labels = self.labels
            if labels.get(label, UNLABELLED) < kind:
                labels[label] = kind
                self._symbol = symbol
            if kind == DEFINITION:
                self.has_definition = True
        if end > self.end:
            self.end = end

    def symbol(self) -> Label:
        if self._symbol is None:
            self._symbol = symbol_of_labels(self.labels, self.scope)
        return self._symbol

    def symbol_with(self, kind: int, label: Label | None) -> Label:
        """The symbol the group would have with one more item of this kind and label."""
        labels = self.labels
        if not kind or labels.get(label, UNLABELLED) >= kind:
            return self.symbol()
        labels = dict(labels)
        labels[label] = kind
        return symbol_of_labels(labels, self.scope)

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
        self._symbol = None
        for item in items:
            self.add(item)


def symbol_of_labels(labels: dict[Label, int], scope: Label) -> Label:
    """The most specific label of a definition (or a piece of one) if every other label
    is one of its scopes; otherwise the common prefix of all labels."""
    if len(labels) <= 1:
        for label in labels:
            return label  # both rules give the one label
        return scope
    deepest = max(labels, key=len)
    if labels[deepest] >= PART_OF_DEFINITION:
        for label in labels:
            if deepest[: len(label)] != label:
                break
        else:
            return deepest
    it = iter(labels)
    prefix = next(it)
    for label in it:
        if label[: len(prefix)] == prefix:
            continue  # prefix of this label already
        n = 0
        for x, y in zip(prefix, label):
            if x != y:
                break
            n += 1
        prefix = prefix[:n]
    return prefix
