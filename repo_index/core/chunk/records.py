"""The chunk record, the text it is embedded as, its ids and its table.

Chunk text: the exact source slice, trimmed: leading blank lines and trailing whitespace
are removed; the indentation of the first line is kept unless the previous chunk ends on
that same line (a line split mid-way, e.g. minified code). So `text` spans exactly the
lines `start_line..end_line` (1-based, inclusive, counted by "\\n"); two consecutive
chunks share a line only when that line itself was split.

Breadcrumbs (`symbol`): definition names joined by the language's separator ("." for most
languages, "::" for C, C++, Rust, PHP and Ruby, " > " between Markdown headings), e.g.
`Class.method`, `ns::Widget::draw`, `impl Display for Foo::fmt`, `Server.Handle` (Go
methods are `Receiver.Method`), `Install > Linux`. Which names a chunk gets is decided by
`groups.symbol_of_labels`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# Smallest accepted budget: the header needs room and the code needs at least a line.
MIN_MAX_TOKENS = 32
# Header limits: the tail of a long path/breadcrumb is the informative part.
HEADER_PATH_CHARS = 80
HEADER_SYMBOL_CHARS = 80

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


def clip_tail(value: str, limit: int) -> str:
    """`value` on one line, cut to its last `limit` characters (marked by "…")."""
    value = value.replace("\r", " ").replace("\n", " ")
    return value if len(value) <= limit else "…" + value[-(limit - 1):]


def embedding_text(path: str, symbol: str, text: str) -> str:
    """The text sent to the embedder: a one-line context header, then the code.

    `# a/b.py > Class.method` (or `# a/b.py` when the symbol is empty); path and symbol
    are cut to their last 80 characters. For a small `max_tokens` the chunker shortens
    the stored symbol (dropping outer names, then all of it) until the header takes at
    most a third of the budget, so this function always reproduces the counted text.
    """
    head = "# " + clip_tail(path, HEADER_PATH_CHARS)
    if symbol:
        head += header_symbol_part(symbol)
    return f"{head}\n{text}"


def header_symbol_part(symbol: str) -> str:
    """What a non-empty symbol adds to the header line of `embedding_text`."""
    return " > " + clip_tail(symbol, HEADER_SYMBOL_CHARS)


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
    """The code_chunks table, one row per chunk, in order (columns: FRAME_COLUMNS).

    `file_sha256` maps a path to the sha256 of the content its chunks were cut from (what
    a reindex compares to reuse them; see table.py); "" for paths not in it."""
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
