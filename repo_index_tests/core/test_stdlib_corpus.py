"""The chunking invariants over a deterministic sample of the running Python's standard
library (the corpus of bench/chunking.py, which checks all of it): 40 files spread
evenly over the size-sorted corpus, tests included, site-packages excluded."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from repo_index.core.chunk.chunker import chunk_source
from repo_index.core.source.content import decode_source
from repo_index.core.chunk.tokens import count_tokens, get_encoding, token_end_array
from repo_index_tests.core.invariants import check_chunks, check_syntax_boundaries

ENC = get_encoding("cl100k_base")
ROOT = Path(sysconfig.get_paths()["stdlib"])
SAMPLE_SIZE = 40
MAX_BYTES = 400_000  # keeps the run short; the bench covers the largest files


def _sample() -> list[str]:
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if d != "site-packages")
        for name in filenames:
            full = Path(dirpath) / name
            if name.endswith(".py") and full.is_file() and not full.is_symlink():
                size = full.stat().st_size
                if 0 < size <= MAX_BYTES:
                    files.append((size, full.relative_to(ROOT).as_posix()))
    files.sort()
    if len(files) <= SAMPLE_SIZE:
        return [path for _, path in files]
    step = (len(files) - 1) / (SAMPLE_SIZE - 1)
    picked, last = [], -1
    for i in range(SAMPLE_SIZE):
        k = max(round(i * step), last + 1)
        while k < len(files) and not _decodes(files[k][1]):  # a few are Latin-1 on purpose
            k += 1
        if k < len(files):
            picked.append(files[k][1])
            last = k
    return picked


def _decodes(rel: str) -> bool:
    try:
        decode_source((ROOT / rel).read_bytes())
    except UnicodeDecodeError:
        return False
    return True


SAMPLE = _sample()


def test_sample_is_spread_over_sizes():
    sizes = [(ROOT / p).stat().st_size for p in SAMPLE]
    assert len(SAMPLE) == min(SAMPLE_SIZE, len(SAMPLE)) and len(set(SAMPLE)) == len(SAMPLE)
    assert max(sizes) > 50 * max(1, min(sizes))


@pytest.mark.parametrize("max_tokens", [512, 200])
@pytest.mark.parametrize("rel", SAMPLE)
def test_stdlib_file_invariants(rel: str, max_tokens: int):
    src = decode_source((ROOT / rel).read_bytes())
    chunks = chunk_source(src, rel, "python", max_tokens, ENC)
    # Includes: every n_tokens equals an exact re-count of the embedded text, all <= cap.
    check_chunks(src, chunks, max_tokens, ENC)
    check_syntax_boundaries(src, chunks, "python", max_tokens, ENC)
    # Same input, same chunks (ids are derived from them).
    assert chunk_source(src, rel, "python", max_tokens, ENC) == chunks


def test_token_end_array_matches_a_plain_encode():
    src = decode_source((ROOT / "textwrap.py").read_bytes()) + "\n<|endoftext|> é 😀\n"
    ends = token_end_array(src, ENC).tolist()
    assert len(ends) == count_tokens(src, ENC)
    assert ends[-1] == len(src.encode("utf-8"))
    assert all(type(e) is int for e in ends[:10])
    assert ends == sorted(ends)
