"""Cache keys: the sha256 of the embedded text, and sorted arrays of them searched with numpy."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

KEY_BYTES = 32  # sha256


def text_key(text: str) -> bytes:
    """The cache key of the text sent to the embedder."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def key_array(keys: Iterable[bytes]) -> np.ndarray:
    """Keys as a sorted array of distinct 32-byte strings (numpy compares them bytewise)."""
    keys = list(keys)
    raw = b"".join(keys)
    if len(raw) != KEY_BYTES * len(keys):
        raise ValueError(f"vector cache keys are {KEY_BYTES}-byte digests")
    return np.unique(np.frombuffer(raw, dtype=f"S{KEY_BYTES}"))


def blob_keys(blob: bytes) -> np.ndarray:
    """The key array stored as one blob (as `key_array(...).tobytes()` wrote it)."""
    return np.frombuffer(blob, dtype=f"S{KEY_BYTES}")


def contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each of `keys`, whether it is in `sorted_keys`."""
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys
