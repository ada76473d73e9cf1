"""Where text can be cut when syntax does not say: blocks, lines, token runs, characters.

All positions are UTF-8 byte offsets into the file (`TokenMeter.data`); a cut never lands
inside a character.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from repo_index.core.chunk.groups import Span

if TYPE_CHECKING:
    from repo_index.core.chunk.measure import TokenMeter


def indent_start(data: bytes, newlines: list[int], pos: int) -> int:
    """`pos`, moved back to its line start when only indentation precedes it (so a chunk
    keeps the indentation of its first line)."""
    if pos == 0 or data[pos - 1] not in b" \t\f\v\r":
        return pos
    i = bisect_left(newlines, pos)
    line_start = newlines[i - 1] + 1 if i else 0
    return line_start if data[line_start:pos].isspace() else pos


def char_start(data: bytes, pos: int, lo: int, hi: int) -> int:
    """Nearest UTF-8 character start to `pos`, strictly inside (lo, hi) if possible."""
    p = pos
    while p > lo and data[p] & 0xC0 == 0x80:
        p -= 1
    if p > lo:
        return p
    p = pos
    while p < hi and data[p] & 0xC0 == 0x80:
        p += 1
    return p


def children_with_gaps(data: bytes, children: list, start: int, end: int) -> list:
    """Non-empty children plus spans for any non-whitespace text between them (text that
    is in no child, e.g. around error recovery, is cut as blocks)."""
    out, pos = [], start
    for child in children:
        a, b = child.start_byte, child.end_byte  # each read is a call into the binding
        if b <= a:
            continue
        if a > pos and not data[pos:a].isspace():
            out.append(Span(pos, a, "block"))
        out.append(child)
        if b > pos:
            pos = b
    if end > pos and not data[pos:end].isspace():
        out.append(Span(pos, end, "block"))
    return out


def blank_line_blocks(data: bytes, newlines: list[int]) -> list[Span]:
    """Blank-line separated blocks (paragraphs, YAML stanzas, SQL statements...)."""
    blocks, start, prev = [], 0, 0
    for p in newlines:
        line = data[prev:p]
        if not line.strip() and start < prev:  # a blank line ends a block
            blocks.append(Span(start, prev, "block"))
            start = p + 1
        elif not line.strip():
            start = p + 1
        prev = p + 1
    if start < len(data):
        blocks.append(Span(start, len(data), "block"))
    return blocks


def line_spans(meter: TokenMeter, a: int, b: int, budget: int) -> list[Span]:
    """The lines of data[a:b]; a single line is cut into runs of `budget` tokens."""
    newlines = meter.newlines
    i = bisect_left(newlines, a)
    spans, start = [], a
    while i < len(newlines) and newlines[i] + 1 < b:
        spans.append(Span(start, newlines[i] + 1, "line"))
        start = newlines[i] + 1
        i += 1
    if not spans:
        return token_runs(meter, a, b, budget)
    spans.append(Span(start, b, "line"))
    return spans


def token_runs(meter: TokenMeter, a: int, b: int, budget: int) -> list[Span]:
    """Runs of at most `budget` tokens (by the whole-file tokenisation)."""
    data, ends = meter.data, meter.token_ends
    step = max(1, budget - 2)  # the two boundary tokens may count in the estimate
    spans, start = [], a
    i = meter.tokens_through[a] + step - 1
    while i < len(ends) and ends[i] < b:
        cut = char_start(data, ends[i], start, b)
        if start < cut < b:
            spans.append(Span(start, cut, "frag"))
            start = cut
        i += step
    spans.append(Span(start, b, "frag"))
    return spans


def split_span(meter: TokenMeter, span: Span, budget: int) -> list[Span]:
    """The pieces of a span estimated over `budget`: a block's lines, a line's token runs,
    or the two halves of a token run (which guarantees progress)."""
    a, b = span.start_byte, span.end_byte
    if span.kind == "block":
        return line_spans(meter, a, b, budget)
    if span.kind == "line":
        return token_runs(meter, a, b, budget)
    mid = char_start(meter.data, (a + b) // 2, a, b)
    return [Span(a, mid, "frag"), Span(mid, b, "frag")]


def split_points(meter: TokenMeter, a: int, b: int, syntax_cuts: list[int]) -> list[int]:
    """Where data[a:b] may be cut in two: at syntax boundaries (`syntax_cuts`, item starts)
    if any fall inside, else at line starts, else at token ends."""
    data, newlines = meter.data, meter.newlines
    inner = [c for c in (indent_start(data, newlines, c) for c in syntax_cuts) if a < c < b]
    if not inner:
        lo, hi = bisect_left(newlines, a), bisect_left(newlines, b - 1)
        inner = [p + 1 for p in newlines[lo:hi] if a < p + 1 < b]
    if not inner:
        through = meter.tokens_through
        lo, hi = through[a], through[b - 1]
        inner = sorted({c for c in (char_start(data, e, a, b) for e in meter.token_ends[lo:hi])
                        if a < c < b})
    return inner
