"""The chunking invariants, shared by the tests (and handy from a REPL)."""

from __future__ import annotations

from repo_index.core.chunk.records import Chunk, chunk_ids, embedding_text
from repo_index.core.chunk.tokens import count_tokens


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
        assert c.n_tokens == count_tokens(embedding_text(c.path, c.header, c.text), encoding)
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
    assert len(set(chunk_ids(chunks))) == len(chunks)


def _token_like(node) -> bool:
    """A leaf, or a node that is mostly its own text (a string around its escapes)."""
    if node.child_count == 0:
        return True
    covered = sum(c.end_byte - c.start_byte for c in node.children)
    return 2 * covered < node.end_byte - node.start_byte


def check_syntax_boundaries(src: str, chunks: list[Chunk], language: str, max_tokens: int,
                            encoding) -> None:
    """No chunk starts or ends inside a token (a string, a comment, an identifier...)
    unless that token alone is too big for a chunk, so it had to be cut by lines/tokens."""
    from repo_index.core.chunk.languages import get_parser

    data = src.encode("utf-8")
    root = get_parser(language).parse(data).root_node
    header, sizes = max_tokens // 3, {}
    cursor = offset = 0  # offset: UTF-8 length of src[:cursor]
    for c in chunks:
        pos = src.find(c.text, cursor)
        body = c.text.lstrip()
        first = offset + len(src[cursor: pos + len(c.text) - len(body)].encode("utf-8"))
        end = first + len(body.encode("utf-8"))
        last = end - len(body[-1].encode("utf-8"))  # start of the last character
        cursor, offset = pos + len(c.text), end
        for lo, hi in ((first, first + len(body[0].encode("utf-8"))), (last, end)):
            node = root.descendant_for_byte_range(lo, hi)
            starts_inside = lo == first and data[node.start_byte:first].strip()
            ends_inside = hi == end and data[end:node.end_byte].strip()
            if (starts_inside or ends_inside) and _token_like(node):
                # Cut only if it did not fit next to the header (at most a third of the
                # budget, or the path's header if that is longer) - with some slack for
                # the estimate.
                header = max(header, count_tokens(embedding_text(c.path, "", ""), encoding))
                room = max_tokens - header
                key = (node.start_byte, node.end_byte)
                if key not in sizes:  # a long string may be cut many times
                    sizes[key] = count_tokens(node.text.decode("utf-8", "replace"), encoding)
                big = sizes[key]
                assert big > room - 4, (
                    f"chunk {c.start_line}-{c.end_line} cuts a {node.type} of {big} tokens")
