"""The few lines of a hit worth showing: those that match the query, with the file's line numbers.

A chunk's stored text is exactly its file's lines `start_line..end_line` (records.py; the
embedded header is not stored), so line i of the text is file line start_line + i. It is
split on "\\n" only: str.splitlines also breaks at form feeds and other separators a
source file may hold, which would shift every line number after them.

The window of at most `lines` lines that holds the most query terms wins, a rare term
(on few of the chunk's lines) counting more than a common one. A query term matches a
line's term when they are equal or share their first four characters (rotate/rotation,
parse/parser). A hit no term matches (found by its vector alone) shows the line that
defines one of the chunk's names, else its first line of code: a chunk may begin with a
comment or the tail of a line from the code above it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..index.lexical import terms

PREFIX = 4  # characters two terms must share to match, when they are not equal
# Function words of English queries ("where is the file rotated"). Not a general stopword
# list (scikit-learn's drops "get", "find", "call", "name", "system": words of code).
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers him his how i if in into is it its itself just me more
most my no nor not of off on once only or other our ours out over own same she should so
some such than that the their theirs them then there these they this those through to too
under until up very was we were what when where which while who whom why will with would
you your yours
""".split())
# Line starts that make a comment-only line, by language ("" when unknown). A leading "#"
# is a heading in Markdown and a directive in C, so it counts only where it is a comment.
_HASH, _SLASH = ("#",), ("//", "/*", "*")
COMMENT_STARTS = {
    **dict.fromkeys(("python", "ruby", "bash", "yaml", "toml", "make", "dockerfile", "cmake"), _HASH),
    **dict.fromkeys(("javascript", "jsx", "typescript", "tsx", "go", "rust", "java", "kotlin", "c", "cpp",
                     "csharp", "scala", "swift", "css"), _SLASH),
    "php": _HASH + _SLASH, "lua": ("--",), "sql": ("--", "/*", "*"), "html": ("<!--",), "markdown": ("<!--",),
    "": ("# ", "#!", "//", "/*", "*", "--"),
}
_NAME_SEPARATORS = r"::|\."  # Markdown's " > " is told apart by its language


@dataclass(frozen=True)
class Snippet:
    start_line: int  # the file's, 1-based, inclusive
    end_line: int
    text: str


def query_terms(query: str) -> set[str]:
    """The match keys of a query's words: identifiers whole and in parts, lowercased,
    stopwords dropped."""
    return {_key(t) for t in terms(query) if t not in STOPWORDS}


def best_lines(text: str, start_line: int, query: str, names: tuple[str, ...] = (), lines: int = 4,
               language: str = "") -> Snippet:
    """The window of at most `lines` lines of a hit's `text` (which begins at file line
    `start_line`) that best matches `query`; with no match, the window from the first line
    that defines one of `names` (the chunk's defines, e.g. `Class.method`), else from the
    first line of code. `language` tells comment lines apart (a `#` is not one in C)."""
    rows = [row.rstrip("\r") for row in text.split("\n")]
    wanted = query_terms(query)
    hits = [_key_set(row) & wanted if _may_match(row, wanted) else set() for row in rows]
    first = _best_window(hits, lines) if any(hits) else None
    if first is None:
        first = _defining_line(rows, names, language)
    if first is None:
        first = next((i for i, row in enumerate(rows) if row.strip() and not _comment(row, language)),
                     next((i for i, row in enumerate(rows) if row.strip()), 0))
    return _window(rows, first, lines, start_line)


def _key(term: str) -> str:
    # Terms sharing their first PREFIX characters get one key; a shorter term keys as
    # itself, so it matches only its equal (keys of two lengths never meet).
    return term[:PREFIX]


def _may_match(row: str, wanted: set[str]) -> bool:
    # A term's key is a piece of the lowercased line, so a line holding none of the keys
    # is not split into terms (most of a chunk's lines; 1.3 -> 0.8 ms on 300 lines).
    low = row.lower()
    return any(key in low for key in wanted)


def _key_set(row: str) -> set[str]:
    return {_key(t) for t in terms(row)}


def _best_window(hits: list[set[str]], lines: int) -> int:
    """The first line of the best-matching window: most (rarity-weighted) distinct query
    terms, then most matching lines, then the earliest; started at its first matching line
    so the match is not shown as the last of the window."""
    df: dict[str, int] = {}
    for found in hits:
        for key in found:
            df[key] = df.get(key, 0) + 1
    n = len(hits)
    weight = {key: 1.0 + math.log(n / count) for key, count in df.items()}
    best, best_rank = 0, None
    for start in range(n):
        part = hits[start:start + lines]
        if not part[0]:  # a window that starts with a match ranks the same or better
            continue
        found = set().union(*part)
        rank = (sum(weight[key] for key in found), sum(1 for h in part if h))
        if best_rank is None or rank > best_rank:
            best, best_rank = start, rank
    return best


def _defining_line(rows: list[str], names: tuple[str, ...], language: str) -> int | None:
    """The first line of code that holds one of `names`' own name (the last part of a
    qualified name) as a whole word."""
    separators = " > " if language == "markdown" else _NAME_SEPARATORS  # a heading may hold a "."
    bare = {re.split(separators, name)[-1].strip() for name in names if name}
    bare.discard("")
    if not bare:
        return None
    pattern = re.compile(r"(?<![\w$])(?:" + "|".join(map(re.escape, sorted(bare))) + r")(?![\w$])")
    return next((i for i, row in enumerate(rows) if pattern.search(row) and not _comment(row, language)), None)


def _comment(row: str, language: str) -> bool:
    return row.lstrip().startswith(COMMENT_STARTS.get(language, COMMENT_STARTS[""]))


def _window(rows: list[str], first: int, lines: int, start_line: int) -> Snippet:
    """rows[first:first + lines] with trailing blank lines dropped; a window that would
    run past the text's end begins earlier instead (no blank line at its start)."""
    last = len(rows) - 1
    while last > first and not rows[last].strip():
        last -= 1
    begin = max(0, min(first, last - lines + 1))
    while begin < first and not rows[begin].strip():
        begin += 1
    end = min(begin + lines - 1, last)
    while end > begin and not rows[end].strip():
        end -= 1
    return Snippet(start_line + begin, start_line + end, "\n".join(rows[begin:end + 1]))
