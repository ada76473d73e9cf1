"""The lexical side of a repository's index: SQLite FTS5 with BM25, one file per
repository, kept exactly in step with its chunks as the Chroma collection is.

Why FTS5: it ships with Python's sqlite3 (nothing to install or run), ranks with BM25,
weighs columns, and a whole update is one transaction, so a killed sync leaves the old
index or the new one, never half of each. tantivy would be faster on millions of chunks,
but one repository is at most a few hundred thousand chunks, which FTS5 answers in
milliseconds.

Code-aware terms: every identifier is indexed whole (`max_tokens`, lowercased) and split at
underscores, camelCase, acronyms and digits (`parseHTTPResponse` -> parse, http,
response), so a query matches an exact name strongly and its words loosely. The path and
the symbols (the chunk's symbol and every definition it holds) are columns of their own,
weighted above the body.

The sync is a diff against what the index itself holds (ids and line spans), not against
what the last run meant to write: after a crash the next sync converges, and an unchanged
reindex reads the spans and writes nothing.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# 4: each chunk's text, which the collection no longer stores; 5: each chunk's symbol and
# defines, which the collection no longer stores either (search reads a hit's place here).
SCHEMA_VERSION = 5
# bm25() weights, in column order (path, symbols, body): a name in the symbols outweighs
# the same word in a body ten times over.
WEIGHTS = (3.0, 10.0, 1.0)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def terms(text: str) -> list[str]:
    """The index terms of `text`: each identifier lowercased whole, then its parts."""
    out: list[str] = []
    for word in _IDENT.findall(text):
        out.extend(_word_terms(word))
    return out


def body_terms(text: str) -> str:
    """`terms` of a chunk's text as FTS5 reads them, cheaply: the lowercased text (the
    tokenizer keeps identifiers whole, `_` being a token character, so each counts as often
    as it occurs), then the parts of each distinct identifier that has some, once."""
    return f"{text.lower()}\n{' '.join(filter(None, map(_parts_text, set(_IDENT.findall(text)))))}"


def _word_terms(word: str) -> list[str]:
    parts = _parts_text(word)
    return [word.lower(), *parts.split()] if parts else [word.lower()]


@functools.lru_cache(maxsize=1 << 16)
def _parts_text(word: str) -> str:
    """The parts of an identifier, lowercased and space-separated; "" when it has none.
    Cached: a repository repeats its identifiers thousands of times."""
    parts = _PARTS.findall(word)
    return " ".join(p.lower() for p in parts) if len(parts) > 1 else ""


def definition_names(symbol: str, defines: str | None = None) -> set[str]:
    """The bare names of the definitions a chunk holds the first line of
    (`Formatter.formatTime` -> formattime): its `defines`. Not its symbol when `defines` is
    known: a piece of a long function's body is named after the function but does not
    define it, and must not be taken for its definition. (Tables without `defines`: the
    symbol.)"""
    names = defines.split(", ") if defines is not None else [symbol]
    return {n.rsplit(".", 1)[-1].lower() for n in names if n}


def lexical_path(folder: Path, collection: str) -> Path:
    return Path(folder) / f"{collection}.fts.sqlite"


def delete_index(path: Path) -> bool:
    """Delete a lexical index with its WAL files (a stale WAL must never meet a new file of
    the same name); whether there was one."""
    existed = path.exists()
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        part.unlink(missing_ok=True)
    return existed


@dataclass
class LexicalStats:
    added: int = 0
    deleted: int = 0
    moved: int = 0
    total: int = 0


@dataclass(frozen=True)
class ChunkPlace:
    """Where a chunk is and what it is named: what a search hit shows of it."""
    path: str
    start_line: int
    end_line: int
    symbol: str
    defines: str
    language: str


class StaleLexicalIndex(FileNotFoundError):
    """A lexical index of another schema version: a reader treats it as absent (the next
    sync rebuilds it), never rebuilds it itself."""


@dataclass(frozen=True)
class LexicalHit:
    chunk_id: str
    path: str
    start_line: int
    end_line: int
    names: frozenset[str]  # definition_names of the chunk
    rank: float  # bm25: lower is better


class LexicalIndex:
    """One repository's FTS5 index. Open with `with LexicalIndex(path) as index:`."""

    def __init__(self, path: Path, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise FileNotFoundError(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=600, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")  # searches read while a sync writes
        if not create and self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            self.db.close()
            raise StaleLexicalIndex(f"{self.path} is of another version: the next sync rebuilds it")
        self._schema()

    def __enter__(self) -> LexicalIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def _schema(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        # Another version (or a new file): the index is derived data, rebuilt by the next sync.
        self.db.executescript("""
            BEGIN;
            DROP TABLE IF EXISTS chunks;
            DROP TABLE IF EXISTS fts;
            CREATE TABLE chunks (rowid INTEGER PRIMARY KEY, chunk_id TEXT UNIQUE NOT NULL, path TEXT NOT NULL,
                                 start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, language TEXT NOT NULL,
                                 names TEXT NOT NULL, text TEXT NOT NULL, symbol TEXT NOT NULL,
                                 defines TEXT NOT NULL);
            CREATE VIRTUAL TABLE fts USING fts5(path, symbols, body, tokenize = "unicode61 tokenchars '_'");
            COMMIT;""")
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def spans(self) -> dict[str, tuple[str, int, int]]:
        """chunk id -> (path, start line, end line), for every chunk the index holds."""
        return {cid: (path, start, end) for cid, path, start, end in
                self.db.execute("SELECT chunk_id, path, start_line, end_line FROM chunks")}

    def ids(self) -> set[str]:
        """The ids of every chunk the index holds (what the checks compare)."""
        return {cid for (cid,) in self.db.execute("SELECT chunk_id FROM chunks")}

    def sync(self, chunks: pd.DataFrame, chunk_ids: list[str]) -> LexicalStats:
        """Make the index hold exactly `chunks` (rows for `chunk_ids`), in one transaction."""
        held = self.spans()
        wanted = dict(zip(chunk_ids, range(len(chunk_ids))))
        gone = [cid for cid in held if cid not in wanted]
        new = [i for cid, i in wanted.items() if cid not in held]
        paths, starts, ends = chunks["path"].tolist(), chunks["start_line"].tolist(), chunks["end_line"].tolist()
        moved = [(paths[i], int(starts[i]), int(ends[i]), cid) for cid, i in wanted.items()
                 if cid in held and held[cid] != (paths[i], int(starts[i]), int(ends[i]))]
        stats = LexicalStats(added=len(new), deleted=len(gone), moved=len(moved), total=len(wanted))
        if not (gone or new or moved):
            return stats
        symbols, texts = chunks["symbol"].tolist(), chunks["text"].tolist()
        languages = chunks["language"].tolist()
        defines = chunks["defines"].tolist() if "defines" in chunks else [None] * len(chunks)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for batch in _batches(gone, 500):
                marks = ",".join("?" * len(batch))
                self.db.execute(f"DELETE FROM fts WHERE rowid IN (SELECT rowid FROM chunks WHERE chunk_id IN ({marks}))",
                                batch)
                self.db.execute(f"DELETE FROM chunks WHERE chunk_id IN ({marks})", batch)
            self.db.executemany("UPDATE chunks SET path=?, start_line=?, end_line=? WHERE chunk_id=?", moved)
            for i in new:
                names = definition_names(symbols[i], defines[i])
                rowid = self.db.execute(
                    "INSERT INTO chunks (chunk_id, path, start_line, end_line, language, names, text, symbol, defines) "
                    "VALUES (?,?,?,?,?,?,?,?,?)",
                    (chunk_ids[i], paths[i], int(starts[i]), int(ends[i]), languages[i], " ".join(sorted(names)),
                     texts[i], symbols[i] or "", defines[i] or "")
                ).lastrowid
                # OR REPLACE: a row of the full-text table left without its chunk row (an
                # index damaged by hand) never blocks the sync.
                self.db.execute("INSERT OR REPLACE INTO fts (rowid, path, symbols, body) VALUES (?,?,?,?)",
                                (rowid, " ".join(terms(paths[i])), " ".join(terms(f"{symbols[i]} {defines[i] or ''}")),
                                 body_terms(texts[i])))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return stats

    def texts(self, chunk_ids: list[str]) -> dict[str, str]:
        """chunk id -> its text, for those of `chunk_ids` the index holds."""
        return {cid: text for cid, text in self._rows("text", chunk_ids)}

    def places(self, chunk_ids: list[str]) -> dict[str, ChunkPlace]:
        """chunk id -> its place, for those of `chunk_ids` the index holds."""
        return {cid: ChunkPlace(*place)
                for cid, *place in self._rows("path, start_line, end_line, symbol, defines, language", chunk_ids)}

    def _rows(self, columns: str, chunk_ids: list[str]) -> Iterable[tuple]:
        """(chunk id, `columns`...) of those of `chunk_ids` the index holds."""
        for batch in _batches(list(dict.fromkeys(chunk_ids)), 500):
            marks = ",".join("?" * len(batch))
            yield from self.db.execute(f"SELECT chunk_id, {columns} FROM chunks WHERE chunk_id IN ({marks})", batch)

    def search(self, query: str, n: int, language: str | None = None,
               path_glob: str | None = None) -> list[LexicalHit]:
        """The `n` best chunks for `query` by BM25 over path, symbols and body, of one
        language and under a path glob if given (SQLite GLOB: `*` spans folders, as fnmatch)."""
        words = list(dict.fromkeys(terms(query)))
        if not words:
            return []
        match = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
        sql = ("SELECT c.chunk_id, c.path, c.start_line, c.end_line, c.names, bm25(fts, ?, ?, ?) AS rank "
               "FROM fts JOIN chunks c ON c.rowid = fts.rowid WHERE fts MATCH ?"
               + (" AND c.language = ?" if language else "") + (" AND c.path GLOB ?" if path_glob else "")
               + " ORDER BY rank LIMIT ?")
        args = [*WEIGHTS, match, *([language] if language else []), *([path_glob] if path_glob else []), n]
        return [LexicalHit(cid, path, start, end, frozenset(names.split()), rank)
                for cid, path, start, end, names, rank in self.db.execute(sql, args)]


def _batches(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
