"""Chunk the discovered files of a repository into the chunk table, over processes.

`chunk_repository(path)` is the library entry point (discovery + chunking, no Dagster);
the `code_chunks` asset runs `chunk_files` on the table `repo_files` produced. A file
that fails to read or parse is counted under a reason, never fatal to the run.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from .chunker import Chunk, chunk_source, chunks_frame
from .discovery import decode_source, discover
from .tokens import DEFAULT_ENCODING, get_encoding

# Below this many files a process pool costs more than it saves.
MIN_FILES_PER_WORKER = 64


def _chunk_one(root: Path, path: str, language: str, max_tokens: int, encoding_name: str) -> list[Chunk]:
    data = (root / path).read_bytes()
    return chunk_source(decode_source(data), path, language, max_tokens, get_encoding(encoding_name))


def chunk_shard(root: str, files: list[tuple[str, str]], max_tokens: int,
                encoding_name: str = DEFAULT_ENCODING) -> tuple[list[Chunk], Counter]:
    """Chunks of `files` [(path, language)] under `root`, and failures by reason."""
    chunks: list[Chunk] = []
    failed: Counter = Counter()
    for path, language in files:
        try:
            chunks.extend(_chunk_one(Path(root), path, language, max_tokens, encoding_name))
        except OSError:
            failed["unreadable"] += 1
        except (UnicodeDecodeError, ValueError):
            failed["not_utf8"] += 1
        except RecursionError:
            failed["too_deeply_nested"] += 1
    return chunks, failed


def shard_files(files: list[tuple[str, str, int]], n_shards: int) -> list[list[tuple[str, str]]]:
    """Split [(path, language, size)] into `n_shards` lists of similar total size."""
    shards: list[list[tuple[str, str]]] = [[] for _ in range(max(1, n_shards))]
    loads = [0] * len(shards)
    for path, language, size in sorted(files, key=lambda f: -f[2]):
        i = loads.index(min(loads))
        shards[i].append((path, language))
        loads[i] += size
    return [s for s in shards if s]


def chunk_files(root: Path, files: pd.DataFrame, max_tokens: int, workers: int | None = None,
                encoding_name: str = DEFAULT_ENCODING) -> tuple[pd.DataFrame, Counter]:
    """The chunk table for `files` (columns path, language, size_bytes), sorted by path."""
    items = list(zip(files["path"], files["language"], files["size_bytes"]))
    workers = workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(items) // MIN_FILES_PER_WORKER))
    if workers == 1:
        chunks, failed = chunk_shard(str(root), [(p, lang) for p, lang, _ in items], max_tokens, encoding_name)
    else:
        chunks, failed = [], Counter()
        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(chunk_shard, str(root), shard, max_tokens, encoding_name)
                       for shard in shard_files(items, workers * 2)]
            for fut in futures:
                part, part_failed = fut.result()
                chunks.extend(part)
                failed.update(part_failed)
    chunks.sort(key=lambda c: (c.path, c.start_line))
    return chunks_frame(chunks), failed


def chunk_repository(path: str | Path, max_tokens: int = 512, workers: int | None = None,
                     include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> pd.DataFrame:
    """Discover and chunk a working tree; the same code the `code_chunks` asset runs."""
    root = Path(path).resolve()
    found = discover(root, include, exclude)
    files = pd.DataFrame(
        [(f.path, f.language, f.size_bytes) for f in found.files],
        columns=["path", "language", "size_bytes"],
    )
    table, _ = chunk_files(root, files, max_tokens, workers)
    return table
