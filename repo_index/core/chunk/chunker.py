"""Syntax-aware chunking of source files with an exact token cap.

How a file is cut (`chunk_source`):

1. Parse with tree-sitter (code, Markdown) or split into blank-line blocks (data and
   text files). Tokenise the whole file once; the tokens of any byte range are then
   estimated from a per-byte count of the tokens ended so far (no re-tokenising per
   node, and O(1) per estimate).
2. Pack siblings greedily, in order, up to the budget: small definitions, statements and
   comments merge while they fit. A node too big alone is descended into and its
   children packed the same way, under its name if it is a definition. What is pending
   goes down with it: a header (`def f(x):`, `namespace a {`) into the first piece of
   the body; before a definition of its own, only the comments/decorators/attributes
   right above it (which otherwise move forward to the definition when it fits). A node
   that has no syntax children to cut at (a long string or comment, or deeper than
   `_MAX_DEPTH` levels of oversized nesting) is split by lines, and a line by tokens.
   Recursion is bounded by `_MAX_DEPTH`, so thousands of nested brackets cannot
   overflow the stack.
3. Groups become chunks: the file is partitioned at the group starts (moved back to the
   start of the line when only indentation precedes them), so nothing is lost or
   duplicated. Each piece is trimmed and counted exactly (header included): read off the
   whole-file tokenisation when its edges allow it (cl100k pre-tokenizes a slice that
   starts at a line start and ends before whitespace exactly as inside the file; see
   `_count`), else re-encoded, and always re-encoded within a few tokens of the cap. One
   over the cap (tiktoken counts are not additive, the estimate can be off) is halved at
   a syntax boundary, else a line, else a token. A chunk of a few tokens (a `}` that
   missed its block's chunk) joins its neighbour when the result fits.

Chunk text: the exact source slice, trimmed: leading blank lines and trailing whitespace
are removed; the indentation of the first line is kept unless the previous chunk ends on
that same line (a line split mid-way, e.g. minified code). So `text` spans exactly the
lines `start_line..end_line` (1-based, inclusive, counted by "\\n"); two consecutive
chunks share a line only when that line itself was split.

Breadcrumbs (`symbol`): definition names joined by the language's separator ("." for most
languages, "::" for C, C++, Rust, PHP and Ruby, " > " between Markdown headings), e.g.
`Class.method`, `ns::Widget::draw`, `impl Display for Foo::fmt`, `Server.Handle` (Go
methods are `Receiver.Method`), `Install > Linux`. A chunk is named after its most
specific definition when every other name in it is an enclosing one (a whole method, or
a class header with its first method); otherwise after what its contents share (several
methods: the class; several top-level functions: ""). A piece of a split definition is
named after that definition.

Input text must be a valid Python str without lone surrogates (files are decoded as
UTF-8 upstream).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from repo_index.core.chunk.languages import LanguageSpec, definition_name, get_parser, get_spec, parse
from repo_index.core.chunk.tokens import count_tokens, line_additive, token_end_array, tokens_through

if TYPE_CHECKING:
    import pandas as pd
    import tiktoken

# Smallest accepted budget: the header needs room and the code needs at least a line.
MIN_MAX_TOKENS = 32
# Header limits: the tail of a long path/breadcrumb is the informative part.
HEADER_PATH_CHARS = 80
HEADER_SYMBOL_CHARS = 80
_MIN_CODE_TOKENS = 16  # the header must leave at least this much room
# Slack for estimation error. The estimate errs high (tokens straddling a boundary
# count whole), and every chunk is counted exactly before it is emitted anyway.
_MARGIN = 0
_TINY_TOKENS = 3  # a chunk this small (`}`, `end`) joins a neighbour when that fits
_MAX_DEPTH = 64  # levels of oversized nesting descended before falling back to lines
# A chunk whose count is derived from the whole-file tokenisation is still re-encoded when
# it lands this close to the cap (belt and braces: the cap is the one hard guarantee).
_VERIFY_WINDOW = 4
# Bytes of the UTF-8 text, by what cl100k's pre-tokenizer does at them (see _count).
_ALNUM_STR = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALNUM = frozenset(_ALNUM_STR.encode())
_PUNCT = frozenset(c for c in range(0x21, 0x7F) if c not in _ALNUM)
_SPACE_AFTER = frozenset(b" \t\v\f")
_NEWLINE = frozenset(b"\n\r")

FRAME_COLUMNS = ["chunk_id", "path", "language", "start_line", "end_line", "symbol",
                 "n_tokens", "text", "content_hash", "file_sha256"]


@dataclass(frozen=True, slots=True)
class Chunk:
    path: str
    language: str
    start_line: int  # 1-based, inclusive
    end_line: int
    symbol: str  # breadcrumb, "" at top level
    text: str  # exact (trimmed) source slice
    n_tokens: int  # tokens of embedding_text(path, symbol, text)


def _clip(value: str, limit: int) -> str:
    value = value.replace("\r", " ").replace("\n", " ")
    return value if len(value) <= limit else "…" + value[-(limit - 1):]


def embedding_text(path: str, symbol: str, text: str) -> str:
    """The text sent to the embedder: a one-line context header, then the code.

    `# a/b.py > Class.method` (or `# a/b.py` when the symbol is empty); path and symbol
    are cut to their last 80 characters. For a small `max_tokens` the chunker shortens
    the stored symbol (dropping outer names, then all of it) until the header takes at
    most a third of the budget, so this function always reproduces the counted text.
    """
    head = "# " + _clip(path, HEADER_PATH_CHARS)
    if symbol:
        head += _symbol_part(symbol)
    return f"{head}\n{text}"


def _symbol_part(symbol: str) -> str:
    """What a non-empty symbol adds to the header line of `embedding_text`."""
    return " > " + _clip(symbol, HEADER_SYMBOL_CHARS)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_ids(chunks: list[Chunk]) -> list[str]:
    """Stable ids from (path, symbol, text) - not line numbers, so code inserted above a
    chunk leaves its id unchanged. Identical twins in a file get an ordinal (0, 1, ...)."""
    seen: dict[tuple[str, str, str], int] = {}
    ids = []
    for c in chunks:
        key = (c.path, c.symbol, c.text)
        ordinal = seen.get(key, 0)
        seen[key] = ordinal + 1
        raw = "\x00".join((c.path, c.symbol, c.text, str(ordinal)))
        ids.append(hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32])
    return ids


def chunks_frame(chunks: list[Chunk], file_sha256: dict[str, str] | None = None) -> pd.DataFrame:
    """The code_chunks table (see DESIGN.md), one row per chunk, in order.

    `file_sha256` maps a path to the sha256 of the content its chunks were cut from (what
    a reindex compares to reuse them; see chunk_tables.py); "" for paths not in it."""
    import pandas as pd

    def strings(values: list[str]) -> pd.Series:
        # pandas' default string dtype ("str" in pandas 3, object before), so these
        # columns concatenate cleanly with frames built elsewhere.
        return pd.Series(values, dtype="str")

    def ints(values: list[int]) -> pd.Series:
        return pd.Series(values, dtype="int64")

    columns = {
        "chunk_id": strings(chunk_ids(chunks)),
        "path": strings([c.path for c in chunks]),
        "language": strings([c.language for c in chunks]),
        "start_line": ints([c.start_line for c in chunks]),
        "end_line": ints([c.end_line for c in chunks]),
        "symbol": strings([c.symbol for c in chunks]),
        "n_tokens": ints([c.n_tokens for c in chunks]),
        "text": strings([c.text for c in chunks]),
        "content_hash": strings([content_hash(c.text) for c in chunks]),
        "file_sha256": strings([(file_sha256 or {}).get(c.path, "") for c in chunks]),
    }
    return pd.DataFrame(columns, columns=FRAME_COLUMNS)


def chunk_source(text: str, path: str, language: str, max_tokens: int,
                 encoding: tiktoken.Encoding, syntax: bool = True) -> list[Chunk]:
    """Split one file into chunks of at most `max_tokens` (header included), covering all
    of its non-whitespace text in order. Syntax errors are fine (they are chunked like
    any other node); raises ValueError only if `max_tokens` < MIN_MAX_TOKENS or the path
    alone leaves under 16 tokens for code, and languages.ParseTimeout if the grammar does
    not finish in time (`syntax=False` then cuts by blank-line blocks and lines)."""
    if max_tokens < MIN_MAX_TOKENS:
        raise ValueError(f"max_tokens={max_tokens} is below the minimum of {MIN_MAX_TOKENS}")
    if not text.strip():
        return []
    return _Chunker(text, path, language, max_tokens, encoding).run(syntax)


# --- implementation ---------------------------------------------------------------------

# How an item labels the chunk it lands in.
_NONE, _WEAK, _OWNER, _DEF = 0, 1, 2, 3


class _Span:
    """A synthetic piece of source standing in for a node: a block, a line, a token run."""

    __slots__ = ("start_byte", "end_byte", "kind")
    is_named = False
    type = "span"

    def __init__(self, start: int, end: int, kind: str) -> None:
        self.start_byte, self.end_byte, self.kind = start, end, kind


class _Group:
    """Consecutive items that will become one chunk (unless the exact count says no)."""

    __slots__ = ("items", "scope", "labels", "has_def", "closed", "ext_start", "end",
                 "_symbol")

    def __init__(self, scope: tuple[str, ...], ext_start: int) -> None:
        self.items: list[tuple] = []  # (start, end, kind, label, attach)
        self.scope = scope
        self.labels: dict[tuple[str, ...], int] = {}  # label -> strongest kind seen
        self.has_def = False  # holds a whole definition
        # Tail of a split node: 0 = open; 1 = a split statement: anything but a
        # definition may join; 2 = a split definition: only its own tokens may join.
        self.closed = 0
        self.ext_start = ext_start
        self.end = 0
        self._symbol: tuple[str, ...] | None = None  # cache of symbol()

    def add(self, item: tuple, symbol: tuple[str, ...] | None = None) -> None:
        """Append `item`; `symbol`, if given, is `symbol_with` for it (saves recomputing)."""
        self.items.append(item)
        _, end, kind, label, _ = item
        if kind:
            labels = self.labels
            if labels.get(label, 0) < kind:
                labels[label] = kind
                self._symbol = symbol
            if kind == _DEF:
                self.has_def = True
        if end > self.end:
            self.end = end

    def symbol(self) -> tuple[str, ...]:
        if self._symbol is None:
            self._symbol = _symbol(self.labels, self.scope)
        return self._symbol

    def symbol_with(self, kind: int, label: tuple[str, ...] | None) -> tuple[str, ...]:
        """The symbol the group would have with one more item of this kind and label."""
        labels = self.labels
        if not kind or labels.get(label, 0) >= kind:
            return self.symbol()
        labels = dict(labels)
        labels[label] = kind
        return _symbol(labels, self.scope)

    def rebuild(self) -> None:
        items, self.items, self.labels, self.has_def, self.end = self.items, [], {}, False, 0
        self._symbol = None
        for item in items:
            self.add(item)


def _symbol(labels: dict[tuple[str, ...], int], scope: tuple[str, ...]) -> tuple[str, ...]:
    """The most specific label of a definition (or a piece of one) if every other label
    is one of its scopes; otherwise the common prefix of all labels."""
    if len(labels) <= 1:
        for lab in labels:
            return lab  # both rules give the one label
        return scope
    deepest = max(labels, key=len)
    if labels[deepest] >= _OWNER:
        for lab in labels:
            if deepest[: len(lab)] != lab:
                break
        else:
            return deepest
    it = iter(labels)
    prefix = next(it)
    for lab in it:
        if lab[: len(prefix)] == prefix:
            continue  # prefix of this label already
        n = 0
        for x, y in zip(prefix, lab):
            if x != y:
                break
            n += 1
        prefix = prefix[:n]
    return prefix


# What a node type is to `_Chunker._classify`, cached per language (a dict lookup per node
# instead of several set lookups and a substring search).
_ROLE_NONE, _ROLE_DEF, _ROLE_WRAPPER = 0, 1, 2
_KIND_ROLES: dict[LanguageSpec, dict[str, tuple[int, bool]]] = {}


def _kind_role(spec: LanguageSpec, kind: str) -> tuple[int, bool]:
    """(role, attaches forward) of node type `kind`."""
    if kind in spec.definitions:
        role = _ROLE_DEF
    elif kind in spec.wrappers:
        role = _ROLE_WRAPPER
    else:
        role = _ROLE_NONE
    return role, "comment" in kind or kind in spec.attach_forward


@lru_cache(maxsize=4096)
def _piece_tokens(encoding: tiktoken.Encoding, piece: str) -> int:
    return count_tokens(piece, encoding)


class _Chunker:
    def __init__(self, text: str, path: str, language: str, max_tokens: int,
                 encoding: tiktoken.Encoding) -> None:
        self.path, self.language = path, language
        self.max_tokens, self.enc = max_tokens, encoding
        self.spec: LanguageSpec = get_spec(language)
        self.sep = self.spec.separator
        self.kind_roles = _KIND_ROLES.setdefault(self.spec, {})
        self._kids: tuple | None = None  # (node, _with_gaps of its children), last computed
        self.data = text.encode("utf-8")
        ends = token_end_array(text, encoding)
        self.n_tokens = len(ends)
        # tok[p] = tokens ending at or before byte p: O(1) counts for any byte range.
        self.tok = tokens_through(ends, len(self.data))
        self._ends_array, self._ends = ends, None  # as a list only when cutting by tokens
        # Newline byte positions, found by numpy in one pass.
        self.nl = np.flatnonzero(np.frombuffer(self.data, np.uint8) == 0x0A).tolist()
        self.header_cache: dict[tuple[str, ...], tuple[str, int]] = {}
        self.header_bound: dict[tuple[str, ...], int | None] = {}
        self.symbol_tokens: dict[str, int] = {}  # symbol -> tokens of its header line
        self.additive = line_additive(encoding)
        self.out: list[tuple[Chunk, int, int]] = []  # (chunk, region start, region end)
        path_header = count_tokens(embedding_text(path, "", ""), encoding)
        if path_header > max_tokens - _MIN_CODE_TOKENS:
            raise ValueError(
                f"max_tokens={max_tokens} leaves no room for code after the header of {path!r}")
        # What `_header(())` would count (the empty symbol is never shortened).
        self.header_cache[()] = ("", path_header)
        self.symbol_tokens[""] = path_header
        # Tokens of "# <path>" when a header "# <path> > <symbol>\n" always tokenises as
        # that plus " > <symbol>\n" (see `_header_tokens`), else None.
        self.path_part: int | None = None
        clipped = _clip(path, HEADER_PATH_CHARS)
        if self.additive and clipped and 0x21 <= ord(clipped[-1]) <= 0x7E:
            self.path_part = (path_header - 1 if clipped[-1] in _ALNUM_STR  # + "\n" alone
                              else count_tokens("# " + clipped, encoding))

    @property
    def ends(self) -> list[int]:
        """Byte offset where each token ends (only the rare cuts by tokens need it)."""
        if self._ends is None:
            self._ends = self._ends_array.tolist()
        return self._ends

    # -- measuring --

    def _est(self, a: int, b: int) -> int:
        """Tokens of data[a:b], estimated from the whole-file tokenisation (tokens that
        straddle a boundary count whole, so this errs high)."""
        if b <= a:
            return 0
        tok = self.tok
        # tok[b - 1] = tokens ending before b = the index of the token holding byte b - 1
        # (at most n_tokens - 1, as b <= len(data)); tok[a] = tokens ending by a.
        return tok[b - 1] - tok[a] + 1

    def _header(self, label: tuple[str, ...]) -> tuple[str, int]:
        """(symbol to store, header tokens) for a breadcrumb, shortened for small budgets."""
        hit = self.header_cache.get(label)
        if hit is None:
            parts = list(label)
            while True:
                symbol = self.sep.join(parts)
                n = self._header_tokens(symbol)
                if not parts or n <= self.max_tokens // 3:
                    break
                parts.pop(0)
            hit = self.header_cache[label] = (symbol, n)
        return hit

    def _header_tokens(self, symbol: str) -> int:
        """count_tokens(embedding_text(path, symbol, "")), cached per symbol.

        When the (clipped) path ends in printable ASCII other than a space, cl100k's
        pre-tokenizer ends a piece right before " > " (a letter, digit or punctuation run
        stops at a space, and no whitespace run reaches back into the path), and pieces
        are BPE-encoded independently; so only " > <symbol>\n" is encoded here, the path
        part being counted once per file."""
        n = self.symbol_tokens.get(symbol)
        if n is None:
            if symbol and self.path_part is not None:
                n = self.path_part + count_tokens(_symbol_part(symbol) + "\n", self.enc)
            else:
                n = count_tokens(embedding_text(self.path, symbol, ""), self.enc)
            self.symbol_tokens[symbol] = n
        return n

    def _header_bound(self, label: tuple[str, ...]) -> int | None:
        """An upper bound of `_header(label)[1]` without encoding anything (a token is at
        least a byte), or None if it cannot rule out that the symbol gets shortened."""
        bound = self.header_bound.get(label, -1)
        if bound == -1:
            bound, symbol = None, self.sep.join(label)
            if symbol and self.path_part is not None:
                tail = _symbol_part(symbol) + "\n"
                bound = self.path_part + len(tail.encode("utf-8"))
                if bound > self.max_tokens // 3:
                    bound = None
            self.header_bound[label] = bound
        return bound

    def _fits_est(self, est: int, label: tuple[str, ...]) -> bool:
        """Whether `est` tokens of code fit under the header of `label`. Most calls are
        decided by a bound on the header, so most definitions never get their header
        counted exactly (only those that name a chunk or are split)."""
        hit = self.header_cache.get(label)
        if hit is None:
            bound = self._header_bound(label)
            if bound is not None and est + bound + _MARGIN <= self.max_tokens:
                return True
            hit = self._header(label)
        return est + hit[1] + _MARGIN <= self.max_tokens

    def _fits(self, ext_start: int, end: int, label: tuple[str, ...]) -> bool:
        return self._fits_est(self._est(ext_start, end), label)

    def _ext(self, pos: int) -> int:
        """`pos`, moved back to its line start when only indentation precedes it."""
        data = self.data
        if pos == 0 or data[pos - 1] not in b" \t\f\v\r":
            return pos
        i = bisect_left(self.nl, pos)
        line_start = self.nl[i - 1] + 1 if i else 0
        return line_start if data[line_start:pos].isspace() else pos

    # -- structure --

    def _classify(self, item, scope, owner) -> tuple[int, tuple[str, ...] | None, bool, bool]:
        """(label kind, label, attaches forward, is a wrapper) of one item."""
        if type(item) is _Span:
            if owner is not None:
                return _OWNER, owner, False, False
            return _NONE, None, False, False
        kind = item.type
        info = self.kind_roles.get(kind)
        if info is None:
            info = self.kind_roles[kind] = _kind_role(self.spec, kind)
        role, attach = info
        if role == _ROLE_DEF:
            name = definition_name(item, self.spec, self.data)
            if name:
                return _DEF, scope + (name,), False, False
        elif role == _ROLE_WRAPPER:
            name = self._wrapped_name(item)
            if name:
                return _DEF, scope + (name,), False, True
        if owner is not None:
            return _OWNER, owner, attach, False
        if not attach and item.is_named:
            return _WEAK, scope, False, False
        return _NONE, None, attach, False

    def _wrapped_name(self, node) -> str | None:
        # `@dec def f`, `export const f = () =>`, `template<..> class C`: the definition is
        # a child or grandchild.
        frontier = [node]
        for _ in range(2):
            nxt = []
            for n in frontier:
                for child in n.named_children[:4]:
                    if child.type in self.spec.definitions:
                        name = definition_name(child, self.spec, self.data)
                        if name:
                            return name
                    nxt.append(child)
            frontier = nxt
        return None

    def _children(self, item, depth: int, budget: int) -> list:
        if type(item) is _Span:
            if item.kind == "block":
                return self._lines(item.start_byte, item.end_byte, budget)
            if item.kind == "line":
                return self._frags(item.start_byte, item.end_byte, budget)
            # A token run still estimated over budget: halve it (guarantees progress).
            mid = self._char_start(
                (item.start_byte + item.end_byte) // 2, item.start_byte, item.end_byte)
            return [_Span(item.start_byte, mid, "frag"), _Span(mid, item.end_byte, "frag")]
        if depth < _MAX_DEPTH and item.child_count:
            last = self._kids
            kids = (last[1] if last is not None and last[0] is item
                    else self._with_gaps(item.children, item.start_byte, item.end_byte))
            # When most of the text is not in any child (a string around its escape
            # sequences) the node is a leaf for our purposes: lines are better cut points
            # than escapes. A little uncovered text (error recovery) becomes spans.
            uncovered = sum(k.end_byte - k.start_byte for k in kids if type(k) is _Span)
            if kids and 2 * uncovered < item.end_byte - item.start_byte:
                return kids
        return self._lines(item.start_byte, item.end_byte, budget)

    def _with_gaps(self, children: list, start: int, end: int) -> list:
        """Non-empty children plus spans for any non-whitespace text between them."""
        data, out, pos = self.data, [], start
        for child in children:
            a, b = child.start_byte, child.end_byte  # each read is a call into the binding
            if b <= a:
                continue
            if a > pos and not data[pos:a].isspace():
                out.append(_Span(pos, a, "block"))
            out.append(child)
            if b > pos:
                pos = b
        if end > pos and not data[pos:end].isspace():
            out.append(_Span(pos, end, "block"))
        return out

    def _lines(self, a: int, b: int, budget: int) -> list[_Span]:
        nl = self.nl
        i = bisect_left(nl, a)
        spans, start = [], a
        while i < len(nl) and nl[i] + 1 < b:
            spans.append(_Span(start, nl[i] + 1, "line"))
            start = nl[i] + 1
            i += 1
        if not spans:  # a single line: cut by tokens
            return self._frags(a, b, budget)
        spans.append(_Span(start, b, "line"))
        return spans

    def _char_start(self, pos: int, lo: int, hi: int) -> int:
        """Nearest UTF-8 character start to `pos`, strictly inside (lo, hi) if possible."""
        data = self.data
        p = pos
        while p > lo and data[p] & 0xC0 == 0x80:
            p -= 1
        if p > lo:
            return p
        p = pos
        while p < hi and data[p] & 0xC0 == 0x80:
            p += 1
        return p

    def _frags(self, a: int, b: int, budget: int) -> list[_Span]:
        """Runs of at most `budget` tokens (by the whole-file tokenisation)."""
        ends = self.ends
        step = max(1, budget - 2)  # the two boundary tokens may count in the estimate
        spans, start = [], a
        i = self.tok[a] + step - 1
        while i < len(ends) and ends[i] < b:
            cut = self._char_start(ends[i], start, b)
            if start < cut < b:
                spans.append(_Span(start, cut, "frag"))
                start = cut
            i += step
        spans.append(_Span(start, b, "frag"))
        return spans

    def _pack(self, items, scope: tuple[str, ...], owner: tuple[str, ...] | None,
              depth: int, cur: _Group | None = None) -> list[_Group]:
        """Greedy split/merge of sibling items into groups that fit the budget; `cur` is
        a group carried in from the parent level (a header, or comments above)."""
        out: list[_Group] = []
        spec, next_scope = self.spec, None
        sticky = spec.sticky
        # Hot loop (once per node): `_fits` inlined, locals for attribute lookups.
        tok, header_cache, max_tokens = self.tok, self.header_cache, self.max_tokens
        for node in items:
            if next_scope is not None:
                scope, next_scope = next_scope, None
            start, end = node.start_byte, node.end_byte
            if end <= start:
                continue
            kind, label, attach, wrapper = self._classify(node, scope, owner)
            if kind == _DEF and sticky and node.type in sticky and \
                    node.child_by_field_name("body") is None:
                next_scope = label  # `namespace A.B;` scopes the rest of the file
            # The node of the definition being split (`export` > `const f` > `f = () =>`)
            # is a piece of it, not a definition of its own.
            own_def = kind == _DEF and label != owner
            item_kind = kind if own_def or kind != _DEF else _OWNER
            item = (start, end, item_kind, label, attach)

            if cur is not None and (not cur.closed or not own_def and (
                    cur.closed == 1 or not node.is_named)):
                symbol = cur.symbol_with(item_kind, label)
                a = cur.ext_start
                est = tok[end - 1] - tok[a] + 1 if end > a else 0  # _est(a, end)
                hit = header_cache.get(symbol)
                if (est + hit[1] + _MARGIN <= max_tokens if hit is not None
                        else self._fits_est(est, symbol)):
                    cur.add(item, symbol)
                    continue

            # Pending items that may go down into this node's first piece: a header
            # (`def f(x):`) or statements, never whole definitions.
            carry_all = (cur is not None and not own_def and not cur.has_def
                         and cur.closed != 2)
            # Only the header of the enclosing definition (`namespace a {`, `class A:`)
            # may go down into a definition of its own.
            carry_header = (own_def and cur is not None and not cur.has_def
                            and cur.closed != 2 and bool(cur.labels)
                            and all(k == _OWNER for k in cur.labels.values()))
            ext = self._ext(start)
            if self._fits(ext, end, label if kind else scope):
                # It fits alone. Still descend into it to keep a header (`int main(void)`)
                # with the start of its body, rather than cut mid-line or leave the header
                # alone.
                # (Cheap test first: _has_syntax_children walks the node's children.)
                if not (carry_all and (
                        self._est(cur.ext_start, cur.end) <= self.max_tokens // 2
                        or self.data.find(b"\n", cur.end, start) < 0)
                        and self._has_syntax_children(node, depth)):
                    new = _Group(scope, ext)
                    new.add(item)
                    if cur is not None:
                        self._take_attached(cur, new)
                        out.append(cur)
                    cur = new
                    continue
            elif depth > 2 * _MAX_DEPTH:
                # Cannot happen with sane estimates; the exact check in _emit splits it.
                if cur is not None:
                    out.append(cur)
                cur = _Group(scope, ext)
                cur.add(item)
                continue
            # Pack its children, scoped by it if it is a definition.
            if kind == _DEF:
                sub_scope, sub_owner = (scope if wrapper else label), label
            else:
                sub_scope, sub_owner = scope, owner
            budget = self.max_tokens - self._header(sub_owner or sub_scope)[1] - _MARGIN
            carry = None
            if carry_all or carry_header:
                carry = cur
            elif cur is not None:
                carry = self._split_attached(cur)  # comments/decorators above a definition
                out.append(cur)
            if carry is not None:
                carry.closed = 0
            subs = self._pack(self._children(node, depth, budget), sub_scope, sub_owner,
                              depth + 1, carry)
            out.extend(subs[:-1])
            cur = subs[-1]
            cur.closed = 2 if own_def else max(cur.closed, 1)

        if cur is not None:
            out.append(cur)
        return [g for g in out if g.items]

    def _has_syntax_children(self, node, depth: int) -> bool:
        """Whether cutting inside `node` can still follow syntax (not lines or tokens)."""
        if type(node) is _Span or depth >= _MAX_DEPTH or not node.child_count:
            return False
        kids = self._with_gaps(node.children, node.start_byte, node.end_byte)
        self._kids = (node, kids)  # `_children` of this node, next, reuses them
        return not any(type(k) is _Span for k in kids)

    def _split_attached(self, group: _Group) -> _Group | None:
        """Remove the trailing comments/decorators of `group` into a new group."""
        k = len(group.items)
        while k > 0 and group.items[k - 1][4]:
            k -= 1
        if k == len(group.items):
            return None
        moved = _Group(group.scope, self._ext(group.items[k][0]))
        for item in group.items[k:]:
            moved.add(item)
        del group.items[k:]
        group.rebuild()
        return moved

    def _take_attached(self, prev: _Group, nxt: _Group) -> None:
        """Move comments/decorators at the end of `prev` to the start of `nxt` (they
        describe what follows) when that still fits."""
        k = len(prev.items)
        while k > 0 and prev.items[k - 1][4]:
            k -= 1
        if k == len(prev.items):
            return
        moved = prev.items[k:]
        ext = self._ext(moved[0][0])
        labels = dict(nxt.labels)
        for _, _, kind, label, _ in moved:
            if kind:
                labels[label] = max(kind, labels.get(label, 0))
        if not self._fits(ext, nxt.end, _symbol(labels, nxt.scope)):
            return
        del prev.items[k:]
        prev.rebuild()
        nxt.items[:0] = moved
        nxt.rebuild()
        nxt.ext_start = ext

    # -- emitting --

    def _make(self, a: int, b: int, symbol: str) -> Chunk | bool | None:
        """The chunk for region data[a:b]: None if blank, False if over the cap."""
        raw = self.data[a:b].decode("utf-8")
        body = raw.lstrip()
        if not body:
            return None
        # Keep the first line's indentation, unless that line began in the previous chunk.
        lead = len(raw) - len(body)
        first_line = raw.rfind("\n", 0, lead) + 1
        if first_line == 0 and a > 0 and self.data[a - 1] != 0x0A:
            first_line = lead
        text = raw[first_line:].rstrip()
        n = None
        if self.additive and "\r" not in raw[first_line:lead]:
            ta = a + len(raw[:first_line].encode("utf-8"))
            tb = b - len(raw[first_line + len(text):].encode("utf-8"))
            n = self._count(ta, tb, symbol)
        if n is None:
            n = count_tokens(embedding_text(self.path, symbol, text), self.enc)
        if n > self.max_tokens:
            return False
        start_line = bisect_left(self.nl, a) + 1 + raw.count("\n", 0, first_line)
        return Chunk(self.path, self.language, start_line, start_line + text.count("\n"),
                     symbol, text, n)

    def _count(self, ta: int, tb: int, symbol: str) -> int | None:
        """Exact tokens of embedding_text(path, symbol, data[ta:tb]) read off the whole-file
        tokenisation, or None when the slice's edges do not allow it (see
        `tokens.line_additive`): it must start at a line start, and end before a space, a
        newline after a letter/digit, or a newline after ASCII punctuation (whose run is
        then re-encoded alone, as it does not merge with the newline outside the slice).
        A slice that starts mid-line (its line was split) has its first line re-encoded
        alone, when the next line starts with spaces/tabs then printable ASCII: the
        whitespace run holding the newline then ends exactly at that line start, in the
        slice as in the file, so the rest still reads off the file."""
        data, tok = self.data, self.tok
        head = 0
        if ta and data[ta - 1] != 0x0A:
            q = data.find(b"\n", ta, tb) + 1
            if not q:
                return None
            r = q
            while r < tb and data[r] in b" \t":
                r += 1
            if r >= tb or not 0x21 <= data[r] <= 0x7E:
                return None
            head = count_tokens(data[ta:q].decode("utf-8"), self.enc)
            ta = q
        header = self._header_tokens(symbol)
        cut, tail = tb, 0
        if tb < len(data):
            after, last = data[tb], data[tb - 1]
            if after in _NEWLINE and last not in _ALNUM:
                if last not in _PUNCT:
                    return None
                cut = tb - 1
                while cut > ta and data[cut - 1] in _PUNCT:
                    cut -= 1
                if cut > ta:
                    before = data[cut - 1]
                    if before == 0x20:
                        cut -= 1
                    # A newline before the run (a line of just `)`) ends its own piece
                    # there, as a tab or a letter does.
                    elif before not in _ALNUM and before not in b"\t\v\f\n":
                        return None
                tail = _piece_tokens(self.enc, data[cut:tb].decode("ascii"))
            elif after not in _SPACE_AFTER and after not in _NEWLINE:
                return None
        # Both edges must be token ends of the whole-file tokenisation (p is one when
        # tok[p] > tok[p - 1]).
        i, j = tok[ta], tok[cut]
        if (ta and tok[ta - 1] == i) or (cut > ta and tok[cut - 1] == j):
            return None
        n = header + head + j - i + tail
        if n > self.max_tokens - _VERIFY_WINDOW:
            return None  # close to the cap: count it exactly
        return n

    def _emit(self, a: int, b: int, label: tuple[str, ...], cuts: list[int]) -> None:
        """Emit data[a:b] as one chunk, or halve it at the best cut if over the cap."""
        made = self._make(a, b, self._header(label)[0])
        if made is None:
            return
        if made:
            self.out.append((made, a, b))
            return
        # Over the cap: split at a syntax boundary, else a line, else a token.
        inner = [c for c in (self._ext(c) for c in cuts) if a < c < b]
        if not inner:
            lo, hi = bisect_left(self.nl, a), bisect_left(self.nl, b - 1)
            inner = [p + 1 for p in self.nl[lo:hi] if a < p + 1 < b]
        if not inner:
            ends = self.ends
            lo, hi = self.tok[a], self.tok[b - 1]
            inner = sorted({c for c in (self._char_start(e, a, b) for e in ends[lo:hi])
                            if a < c < b})
        if not inner:
            raise RuntimeError(f"cannot split {self.data[a:b]!r} under {self.max_tokens} tokens")
        half = self._est(a, b) / 2
        cut = min(inner, key=lambda c: abs(self._est(a, c) - half))
        self._emit(a, cut, label, [c for c in cuts if c < cut])
        self._emit(cut, b, label, [c for c in cuts if c > cut])

    def run(self, syntax: bool = True) -> list[Chunk]:
        parser = get_parser(self.language) if syntax else None
        budget = self.max_tokens - self._header(())[1] - _MARGIN
        if parser is None:
            items = self._blocks()
        else:
            root = parse(parser, self.data).root_node
            items = (self._with_gaps(root.children, 0, len(self.data))
                     or self._lines(0, len(self.data), budget))
        groups = self._pack(items, (), None, 0)
        bounds = [0]
        for g in groups[1:]:
            bounds.append(max(self._ext(g.items[0][0]), bounds[-1]))
        bounds.append(len(self.data))
        for i, g in enumerate(groups):
            cuts = sorted({it[0] for it in g.items[1:]})
            self._emit(bounds[i], bounds[i + 1], g.symbol(), cuts)  # (cached _symbol)
        return self._absorb_tiny(self.out)

    def _absorb_tiny(self, made: list[tuple[Chunk, int, int]]) -> list[Chunk]:
        """Join chunks of a few tokens (a closing `}` that missed its block's chunk by a
        token) to the previous chunk, else the next one, when the result fits."""
        out: list[tuple[Chunk, int, int]] = []
        for k, (c, a, b) in enumerate(made):
            if len(c.text) <= 40 and count_tokens(c.text, self.enc) <= _TINY_TOKENS:
                if out:
                    prev, pa, _ = out[-1]
                    joined = self._make(pa, b, prev.symbol)
                    if joined:
                        out[-1] = (joined, pa, b)
                        continue
                if k + 1 < len(made):
                    nxt, _, nb = made[k + 1]
                    joined = self._make(a, nb, nxt.symbol)
                    if joined:
                        made[k + 1] = (joined, a, nb)
                        continue
            out.append((c, a, b))
        return [c for c, _, _ in out]

    def _blocks(self) -> list[_Span]:
        """Blank-line separated blocks (paragraphs, YAML stanzas, SQL statements...)."""
        data, nl = self.data, self.nl
        blocks, start, prev = [], 0, 0
        for p in nl:
            line = data[prev:p]
            if not line.strip() and start < prev:  # a blank line ends a block
                blocks.append(_Span(start, prev, "block"))
                start = p + 1
            elif not line.strip():
                start = p + 1
            prev = p + 1
        if start < len(data):
            blocks.append(_Span(start, len(data), "block"))
        return blocks
