"""Token counts of one file's byte ranges and of chunk headers, without re-tokenising.

The whole file is tokenised once; the tokens of any byte range are then estimated from a
per-byte count of the tokens ended so far (no re-tokenising per node, and O(1) per
estimate). A chunk's exact count is read off that same tokenisation when its edges allow
it (`TokenMeter.count_from_file`), else its text is re-encoded; header lines are counted
once per distinct header (what they name: `naming`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from repo_index.core.chunk.records import (
    HEADER_PATH_CHARS, clip_tail, embedding_text, header_names_part)
from repo_index.core.chunk.tokens import count_tokens, line_additive, token_end_array, tokens_through

if TYPE_CHECKING:
    import tiktoken

_MIN_CODE_TOKENS = 16  # the header must leave at least this much room
# A chunk whose count is derived from the whole-file tokenisation is still re-encoded when
# it lands this close to the cap (belt and braces: the cap is the one hard guarantee).
_VERIFY_WINDOW = 4
# Bytes of the UTF-8 text, by what cl100k's pre-tokenizer does at them (see count_from_file).
_ALNUM_STR = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALNUM = frozenset(_ALNUM_STR.encode())
_PUNCT = frozenset(c for c in range(0x21, 0x7F) if c not in _ALNUM)
_SPACE_AFTER = frozenset(b" \t\v\f")
_NEWLINE = frozenset(b"\n\r")


@lru_cache(maxsize=4096)
def _run_tokens(encoding: tiktoken.Encoding, run: str) -> int:
    return count_tokens(run, encoding)


class TokenMeter:
    """Measures one file's text against the budget: byte-range estimates, header line
    costs, exact chunk counts."""

    def __init__(self, text: str, path: str, max_tokens: int, encoding: tiktoken.Encoding,
                 separator: str) -> None:
        self.path, self.max_tokens = path, max_tokens
        self.encoding, self.separator = encoding, separator
        self.data = text.encode("utf-8")
        ends = token_end_array(text, encoding)
        # tokens_through[p] = tokens ending at or before byte p: O(1) counts for any range.
        self.tokens_through = tokens_through(ends, len(self.data))
        self._token_end_array, self._token_ends = ends, None  # as a list only when needed
        # Newline byte positions, found by numpy in one pass.
        self.newlines = np.flatnonzero(np.frombuffer(self.data, np.uint8) == 0x0A).tolist()
        self._tokens_by_header: dict[str, int] = {}  # header -> tokens of its header line
        self.line_additive = line_additive(encoding)  # see count_from_file
        path_header = count_tokens(embedding_text(path, "", ""), encoding)
        if path_header > max_tokens - _MIN_CODE_TOKENS:
            raise ValueError(
                f"max_tokens={max_tokens} leaves no room for code after the header of {path!r}")
        self.path_header = path_header  # tokens of the header line naming nothing
        self._tokens_by_header[""] = path_header
        # Tokens of "# <path>" when a header "# <path> > <names>\n" always tokenises as
        # that plus " > <names>\n" (see `header_tokens`), else None.
        self.path_part_tokens: int | None = None
        clipped = clip_tail(path, HEADER_PATH_CHARS)
        if self.line_additive and clipped and 0x21 <= ord(clipped[-1]) <= 0x7E:
            self.path_part_tokens = (path_header - 1 if clipped[-1] in _ALNUM_STR  # + "\n" alone
                                     else count_tokens("# " + clipped, encoding))

    @property
    def token_ends(self) -> list[int]:
        """Byte offset where each token ends (only the rare cuts by tokens need it)."""
        if self._token_ends is None:
            self._token_ends = self._token_end_array.tolist()
        return self._token_ends

    def estimate_tokens(self, a: int, b: int) -> int:
        """Tokens of data[a:b], estimated from the whole-file tokenisation (tokens that
        straddle a boundary count whole, so this errs high)."""
        if b <= a:
            return 0
        through = self.tokens_through
        # through[b - 1] = tokens ending before b = the index of the token holding byte
        # b - 1 (at most the token count - 1, as b <= len(data)); through[a] = tokens
        # ending by a.
        return through[b - 1] - through[a] + 1

    def header_tokens(self, header: str) -> int:
        """count_tokens(embedding_text(path, header, "")), cached per header.

        When the (clipped) path ends in printable ASCII other than a space, cl100k's
        pre-tokenizer ends a piece right before " > " (a letter, digit or punctuation run
        stops at a space, and no whitespace run reaches back into the path), and pieces
        are BPE-encoded independently; so only " > <header>\n" is encoded here, the path
        part being counted once per file."""
        n = self._tokens_by_header.get(header)
        if n is None:
            if header and self.path_part_tokens is not None:
                n = self.path_part_tokens + count_tokens(
                    header_names_part(header) + "\n", self.encoding)
            else:
                n = count_tokens(embedding_text(self.path, header, ""), self.encoding)
            self._tokens_by_header[header] = n
        return n

    def count_from_file(self, start: int, end: int, header_n: int) -> int | None:
        """Exact tokens of embedding_text(path, header, data[start:end]), given the
        `header_n` tokens of its header line (`header_tokens(header)`), read off the
        whole-file tokenisation, or None when the slice's edges do not allow it (see
        `tokens.line_additive`): it must start at a line start, and end before a space, a
        newline after a letter/digit, or a newline after ASCII punctuation (whose run is
        then re-encoded alone, as it does not merge with the newline outside the slice).
        A slice that starts mid-line (its line was split) has its first line re-encoded
        alone, when the next line starts with spaces/tabs then printable ASCII: the
        whitespace run holding the newline then ends exactly at that line start, in the
        slice as in the file, so the rest still reads off the file. None as well when the
        count lands within `_VERIFY_WINDOW` of the cap (the caller then re-encodes)."""
        data, through = self.data, self.tokens_through
        head = 0
        if start and data[start - 1] != 0x0A:
            q = data.find(b"\n", start, end) + 1
            if not q:
                return None
            r = q
            while r < end and data[r] in b" \t":
                r += 1
            if r >= end or not 0x21 <= data[r] <= 0x7E:
                return None
            head = count_tokens(data[start:q].decode("utf-8"), self.encoding)
            start = q
        cut, tail = end, 0
        if end < len(data):
            after, last = data[end], data[end - 1]
            if after in _NEWLINE and last not in _ALNUM:
                if last not in _PUNCT:
                    return None
                cut = end - 1
                while cut > start and data[cut - 1] in _PUNCT:
                    cut -= 1
                if cut > start:
                    before = data[cut - 1]
                    if before == 0x20:
                        cut -= 1
                    # A newline before the run (a line of just `)`) ends its own piece
                    # there, as a tab or a letter does.
                    elif before not in _ALNUM and before not in b"\t\v\f\n":
                        return None
                tail = _run_tokens(self.encoding, data[cut:end].decode("ascii"))
            elif after not in _SPACE_AFTER and after not in _NEWLINE:
                return None
        # Both edges must be token ends of the whole-file tokenisation (p is one when
        # through[p] > through[p - 1]).
        i, j = through[start], through[cut]
        if (start and through[start - 1] == i) or (cut > start and through[cut - 1] == j):
            return None
        n = header_n + head + j - i + tail
        if n > self.max_tokens - _VERIFY_WINDOW:
            return None  # close to the cap: count it exactly
        return n
