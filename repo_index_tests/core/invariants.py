"""The chunking invariants, shared by the tests (and handy from a REPL)."""

from __future__ import annotations

from repo_index.core.chunker import Chunk, embedding_text
from repo_index.core.tokens import count_tokens


def squash(text: str) -> str:
    return "".join(text.split())


def check_chunks(src: str, chunks: list[Chunk], max_tokens: int, encoding) -> None:
    """Assert every documented invariant of `chunk_source`'s output for `src`."""
    if not src.strip():
        assert chunks == []
        return
    assert chunks, "a non-blank file gives at least one chunk"
    # Coverage: non-whitespace text, in order, exactly once.
    assert squash("".join(c.text for c in chunks)) == squash(src)
    newlines = [i for i, ch in enumerate(src) if ch == "\n"]

    def line_of(pos: int) -> int:
        lo, hi = 0, len(newlines)
        while lo < hi:
            mid = (lo + hi) // 2
            if newlines[mid] < pos:
                lo = mid + 1
            else:
                hi = mid
        return lo + 1

    cursor, prev_end_line = 0, 1
    for c in chunks:
        assert c.n_tokens <= max_tokens, (c.n_tokens, max_tokens)
        assert c.n_tokens == count_tokens(embedding_text(c.path, c.symbol, c.text), encoding)
        assert c.text.strip() and c.text == c.text.rstrip()
        # The text is the exact source slice right after the previous chunk, with only
        # whitespace in between.
        pos = src.find(c.text, cursor)
        assert pos >= 0 and not src[cursor:pos].strip(), "chunk text is not the next slice"
        # Indentation is kept only from a line start.
        if c.text[0].isspace():
            assert pos == 0 or src[pos - 1] == "\n"
        # Line numbers agree with the text; ranges are ordered (a shared line only when
        # that line was split between two chunks).
        assert c.start_line == line_of(pos + len(c.text) - len(c.text.lstrip()))
        assert c.end_line == line_of(pos + len(c.text) - 1)
        assert c.start_line <= c.end_line
        assert c.start_line >= prev_end_line
        if c.start_line == prev_end_line and cursor > 0:
            assert "\n" not in src[cursor:pos], "ranges overlap without a split line"
        cursor, prev_end_line = pos + len(c.text), c.end_line
    assert not src[cursor:].strip()


def check_syntax_boundaries(src: str, chunks: list[Chunk], language: str, max_tokens: int,
                            encoding) -> None:
    """No chunk starts or ends inside a syntax node unless that node alone is too big for
    a chunk (then it was cut by lines/tokens)."""
    from repo_index.core.languages import get_parser

    data = src.encode("utf-8")
    root = get_parser(language).parse(data).root_node
    cursor = 0
    for c in chunks:
        pos = src.find(c.text, cursor)
        cursor = pos + len(c.text)
        body = c.text.lstrip()
        first = len(src[: pos + len(c.text) - len(body)].encode("utf-8"))
        last = len(src[: cursor - 1].encode("utf-8"))  # start of the last character
        end = len(src[:cursor].encode("utf-8"))
        for lo, hi in ((first, first + len(body[0].encode("utf-8"))), (last, end)):
            node = root.descendant_for_byte_range(lo, hi)
            starts_inside = lo == first and data[node.start_byte:first].strip()
            ends_inside = hi == end and data[end:node.end_byte].strip()
            if starts_inside or ends_inside:
                big = count_tokens(node.text.decode("utf-8", "replace"), encoding)
                assert big > max_tokens // 2, (
                    f"chunk {c.start_line}-{c.end_line} cuts a {node.type} of {big} tokens")
