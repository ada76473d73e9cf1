"""The chunk record, the text it is embedded as, its ids and its table.

Chunk text: the exact source slice, trimmed: leading blank lines and trailing whitespace
are removed; the indentation of the first line is kept unless the previous chunk ends on
that same line (a line split mid-way, e.g. minified code). So `text` spans exactly the
lines `start_line..end_line` (1-based, inclusive, counted by "\\n"); two consecutive
chunks share a line only when that line itself was split.

What names a chunk (`definitions`): a definition's name is qualified by the definitions
around it, joined by the language's separator ("." for most languages, "::" for C, C++,
Rust, PHP and Ruby, " > " between Markdown headings), e.g. `Class.method`,
`ns::Widget::draw`, `impl Display for Foo::fmt`, `Server.Handle` (Go methods are
`Receiver.Method`), `Install > Linux`.
- `defines`: every definition whose first byte the chunk holds, in order, joined by ", "
  ("" when none: Chroma metadata takes only scalars);
- `symbol`: the first of those, else the innermost definition whose body holds the
  chunk's first byte (a piece of a long method), else "" (imports, top-level statements);
- `header`: what the embedded header line names after the path: the names of `defines`
  (else `symbol`), as many as fit in a third of the budget, the rest said as "+N more".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# Smallest accepted budget: the header needs room and the code needs at least a line.
MIN_MAX_TOKENS = 32
# Header limits: the tail of a long path/name is the informative part.
HEADER_PATH_CHARS = 80
HEADER_NAME_CHARS = 80  # per name

FRAME_COLUMNS = ["chunk_id", "path", "language", "start_line", "end_line", "symbol",
                 "defines", "header", "n_tokens", "text", "content_hash", "file_sha256"]


@dataclass(frozen=True, slots=True)
class Chunk:
    path: str
    language: str
    start_line: int  # 1-based, inclusive
    end_line: int
    symbol: str  # first or enclosing definition, "" when none
    text: str  # exact (trimmed) source slice
    n_tokens: int  # tokens of embedding_text(path, header, text)
    defines: str = ""  # every definition it holds the first byte of, joined by ", "
    header: str = ""  # the names its embedded header line shows


def clip_tail(value: str, limit: int) -> str:
    """`value` on one line, cut to its last `limit` characters (marked by "…")."""
    value = value.replace("\r", " ").replace("\n", " ")
    return value if len(value) <= limit else "…" + value[-(limit - 1):]


def embedding_text(path: str, header: str, text: str) -> str:
    """The text sent to the embedder: a one-line context header, then the code.

    `# a/b.py > A.f, A.g` (or `# a/b.py` when `header` is empty); the path is cut to its
    last 80 characters. The chunker builds `header` (see `measure.TokenMeter.heading`)
    so that the header line takes at most a third of the budget, and counts this text.
    """
    head = "# " + clip_tail(path, HEADER_PATH_CHARS)
    if header:
        head += header_names_part(header)
    return f"{head}\n{text}"


def header_names_part(header: str) -> str:
    """What a non-empty `header` adds to the header line of `embedding_text`."""
    return " > " + header.replace("\r", " ").replace("\n", " ")


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_ids(chunks: list[Chunk]) -> list[str]:
    """Stable ids from (path, symbol, defines, header, text) - not line numbers, so code
    inserted above a chunk leaves its id unchanged, and an unchanged id means an unchanged
    embedded text and metadata. Identical twins in a file get an ordinal (0, 1, ...)."""
    seen: dict[tuple[str, ...], int] = {}
    ids = []
    for c in chunks:
        key = (c.path, c.symbol, c.defines, c.header, c.text)
        ordinal = seen.get(key, 0)
        seen[key] = ordinal + 1
        raw = "\x00".join((*key, str(ordinal)))
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
        "defines": strings([c.defines for c in chunks]),
        "header": strings([c.header for c in chunks]),
        "n_tokens": ints([c.n_tokens for c in chunks]),
        "text": strings([c.text for c in chunks]),
        "content_hash": strings([content_hash(c.text) for c in chunks]),
        "file_sha256": strings([(file_sha256 or {}).get(c.path, "") for c in chunks]),
    }
    return pd.DataFrame(columns, columns=FRAME_COLUMNS)
