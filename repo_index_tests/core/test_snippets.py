"""The lines a hit shows: those that match the query, numbered as in the file, on the
chunks the project's chunker makes of a real standard-library module."""

import logging
from pathlib import Path

import pytest

from repo_index.core.chunk.chunker import chunk_source
from repo_index.core.chunk.tokens import get_encoding
from repo_index.core.search.snippets import best_lines, query_terms

HANDLERS = Path(logging.__file__).with_name("handlers.py")


@pytest.fixture(scope="module")
def handlers():
    """(the file's lines, its chunks at the OpenAI budget)."""
    text = HANDLERS.read_text()
    return text.split("\n"), chunk_source(text, "logging/handlers.py", "python", 512, get_encoding("cl100k_base"))


def chunk_defining(chunks, name: str):
    return next(c for c in chunks if name in c.defines.split(", "))


def line_after(lines: list[str], anchor: str, needle: str) -> int:
    """The file's number of the first line holding `needle` after the line holding `anchor`."""
    start = next(i for i, line in enumerate(lines) if anchor in line)
    return next(i for i, line in enumerate(lines[start:], start + 1) if needle in line)


def assert_file_lines(lines: list[str], snippet) -> None:
    assert snippet.text == "\n".join(lines[snippet.start_line - 1:snippet.end_line])
    assert snippet.text.split("\n")[0].strip() and snippet.text.split("\n")[-1].strip()  # no blank edges


def names(chunk) -> tuple[str, ...]:
    return tuple(chunk.defines.split(", ")) if chunk.defines else ()


def test_a_method_at_the_bottom_of_a_class_chunk_shows_its_own_lines(handlers):
    lines, chunks = handlers
    chunk = chunk_defining(chunks, "BufferingHandler.close")
    assert chunk.defines.startswith("BufferingHandler, ")  # the class and all its methods, close last
    close = line_after(lines, "class BufferingHandler(", "    def close(self):")
    shown_before = [ln for ln in chunk.text.split("\n") if ln.strip()][:4]  # what search printed
    assert lines[close - 1] not in shown_before and close > chunk.start_line + 20

    snippet = best_lines(chunk.text, chunk.start_line, "close the handler", names(chunk), language="python")
    assert snippet.start_line == close and snippet.end_line - snippet.start_line < 4
    assert_file_lines(lines, snippet)
    assert "Close the handler." in snippet.text


def test_the_window_holds_the_most_query_words_and_the_file_numbers_hold_in_every_chunk(handlers):
    lines, chunks = handlers
    chunk = chunk_defining(chunks, "TimedRotatingFileHandler.shouldRollover")
    # "rollover" is on many of the chunk's lines, "time" on fewer: the window shown holds both
    # (rollover/rolling and time/timestamp match by their first four letters).
    snippet = best_lines(chunk.text, chunk.start_line, "rollover time", names(chunk), language="python")
    assert {"roll", "time"} <= {t[:4] for t in query_terms(snippet.text.lower())}
    assert_file_lines(lines, snippet)
    for chunk in chunks:  # first lines split mid-line included: numbers are the file's
        for query in ("close the handler", "socket send pickle", "zzyzx"):
            snippet = best_lines(chunk.text, chunk.start_line, query, names(chunk), language="python")
            assert chunk.start_line <= snippet.start_line <= snippet.end_line <= chunk.end_line
            assert snippet.end_line - snippet.start_line < 4
            first = snippet.text.split("\n")[0]
            assert first in lines[snippet.start_line - 1] and all(
                row == lines[n - 1] for n, row in enumerate(snippet.text.split("\n")[1:], snippet.start_line + 1))


def test_a_hit_no_word_matches_shows_its_definition_not_a_comment_left_from_above(handlers):
    lines, chunks = handlers
    chunk = chunk_defining(chunks, "BaseRotatingHandler")
    first = chunk.text.split("\n")[0]
    assert first.lstrip().startswith("#")  # the tail of `_MIDNIGHT = ...  # number of seconds in a day`
    cls = line_after(lines, "_MIDNIGHT =", "class BaseRotatingHandler(")
    for found_names in (names(chunk), ()):  # by its defines, or as its first line of code
        snippet = best_lines(chunk.text, chunk.start_line, "qwertyuiop", found_names, language="python")
        assert snippet.start_line == cls, found_names
        assert_file_lines(lines, snippet)

    # A chunk opening with a comment block and a line of code before its first definition:
    # that definition by the chunk's defines, else the first line of code, never the comment.
    path = HANDLERS.with_name("__init__.py")
    lines = path.read_text().split("\n")
    chunks = chunk_source(path.read_text(), "logging/__init__.py", "python", 512, get_encoding("cl100k_base"))
    chunk = chunk_defining(chunks, "setLogRecordFactory")
    assert chunk.text.startswith("#")
    snippet = best_lines(chunk.text, chunk.start_line, "qwertyuiop", names(chunk), language="python")
    assert lines[snippet.start_line - 1].startswith("def setLogRecordFactory(")
    assert_file_lines(lines, snippet)
    snippet = best_lines(chunk.text, chunk.start_line, "qwertyuiop", (), language="python")
    assert lines[snippet.start_line - 1] == "_logRecordFactory = LogRecord"
    assert_file_lines(lines, snippet)


def test_query_words_split_into_identifier_parts_without_stopwords():
    assert query_terms("where is shouldRollover for the rotating_file") == {
        "shou", "roll", "rota", "file"}
    assert query_terms("how to log it") == {"log"}  # short words match only their equal
