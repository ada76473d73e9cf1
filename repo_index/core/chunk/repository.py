"""Chunk the discovered files of a repository into the chunk table, in shards.

A repository is cut into a few large shards of similar size (about 2 × workers, never
fewer than MIN_FILES_PER_SHARD files each, so a small repository pays for no extra
process); each shard is chunked on its own and the parts concatenated. The Dagster asset
maps shards over step processes; `chunk_repository(path)` (the library entry point)
maps them over a process pool. Each file is read as it is now, with discovery's checks
made again on what is opened (core/source/reading.py): one that has since grown past
`max_file_bytes`, become a FIFO or a symlink, vanished or stopped being text is counted
as skipped under discovery's reason; one that fails to chunk is counted as failed; neither
is fatal to the run. One whose grammar does not finish in time is cut by
blank-line blocks and lines instead, counted too. Secrets are redacted from each file's
text before it is chunked (core/source/secrets.py), so no chunk text, id, hash or embedding
request ever holds one; they are counted by kind. Examples recorded for metadata are masked
the same way.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .chunker import chunk_source
from .records import Chunk, chunks_frame
from ..source.content import classify_bytes, decode_source
from ..source.discovery import DEFAULT_MAX_FILE_BYTES, discover
from ..source.reading import FileSkipped, read_beneath
from .languages import ParseTimeout
from ..source.secrets import mask, redact
from .tokens import DEFAULT_ENCODING, get_encoding

MIN_FILES_PER_SHARD = 100
log = logging.getLogger(__name__)


@dataclass
class ShardResult:
    chunks: list[Chunk] = field(default_factory=list)
    failed: Counter = field(default_factory=Counter)  # reason -> files that failed to chunk
    skipped: Counter = field(default_factory=Counter)  # reason -> files not chunked for what they became
    by_lines: Counter = field(default_factory=Counter)  # reason -> files cut without syntax
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> "path: message"
    redacted: Counter = field(default_factory=Counter)  # secret kind -> occurrences redacted
    files_redacted: int = 0  # files that had at least one
    redacted_examples: list[str] = field(default_factory=list)  # a few of those files' paths
    # path -> secret kind -> occurrences, per redacted file counted: what a reindex that
    # reuses the file's chunks counts again (ChunkTable.redactions), so the counts stay exact
    file_redactions: dict[str, dict[str, int]] = field(default_factory=dict)
    # path -> sha256 of the content chunked, for files a reindex may reuse (see chunk_tables)
    file_sha256: dict[str, str] = field(default_factory=dict)

    def fail(self, reason: str, path: str, message: str) -> None:
        self.count(self.failed, reason, path, message)

    def skip(self, reason: str, path: str, message: str) -> None:
        self.count(self.skipped, reason, path, message)

    def count(self, counter: Counter, reason: str, path: str, message: str) -> None:
        """One more file under `reason` in `counter`, with a few examples kept."""
        counter[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(mask(f"{path}: {message}")[:300])

    def add_redactions(self, redactions: dict[str, dict[str, int]]) -> None:
        """Count the secrets redacted from files, by path: a file chunked here, or a reused
        file's as counted when it was chunked."""
        for path, kinds in sorted(redactions.items()):
            self.file_redactions[path] = kinds
            self.redacted.update(kinds)
            self.files_redacted += 1
            if len(self.redacted_examples) < 5:
                self.redacted_examples.append(mask(path))

    def merge(self, other: ShardResult) -> None:
        self.chunks.extend(other.chunks)
        self.failed.update(other.failed)
        self.skipped.update(other.skipped)
        self.by_lines.update(other.by_lines)
        self.redacted.update(other.redacted)
        self.files_redacted += other.files_redacted
        self.file_sha256.update(other.file_sha256)
        self.file_redactions.update(other.file_redactions)
        self.redacted_examples = (self.redacted_examples + other.redacted_examples)[:5]
        for reason, items in other.examples.items():
            self.examples[reason] = (self.examples.get(reason, []) + items)[:5]


def chunk_shard(root: str, files: list[tuple[str, str]], max_tokens: int,
                encoding_name: str = DEFAULT_ENCODING, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> ShardResult:
    """Chunks of `files` [(path, language)] under `root`, and skips and failures by reason."""
    encoding = get_encoding(encoding_name)
    out = ShardResult()
    for path, language in files:
        try:
            data = read_beneath(Path(root), path, max_file_bytes)
        except FileSkipped as exc:
            out.skip(exc.reason, path, str(exc))
            continue
        reason = classify_bytes(data)  # it may have stopped being text since discovery
        if reason:
            out.skip(reason, path, "changed since discovery")
            continue
        text = decode_source(data)
        text, secrets = redact(text, path)
        if secrets:
            out.add_redactions({path: dict(secrets)})
        try:
            try:
                out.chunks.extend(chunk_source(text, path, language, max_tokens, encoding))
            except ParseTimeout as exc:
                out.chunks.extend(chunk_source(text, path, language, max_tokens, encoding,
                                               syntax=False))
                out.count(out.by_lines, "parse_timeout", path, str(exc))
            out.file_sha256[path] = hashlib.sha256(data).hexdigest()
        except RecursionError:
            out.fail("too_deeply_nested", path, "nesting too deep to parse")
        except Exception as exc:  # one bad file must not sink the repository
            out.fail("chunk_error", path, f"{type(exc).__name__}: {exc}")
    return out


def plan_shards(files: list[tuple[str, str, int]], workers: int,
                min_files: int = MIN_FILES_PER_SHARD) -> list[list[tuple[str, str]]]:
    """Split [(path, language, size)] into at most 2 × workers shards of similar total size.

    Always at least one shard (possibly empty), so downstream steps always run.
    """
    n = max(1, min(2 * max(1, workers), math.ceil(len(files) / min_files)))
    shards: list[list[tuple[str, str]]] = [[] for _ in range(n)]
    loads = [0] * n
    for path, language, size in sorted(files, key=lambda f: (-f[2], f[0])):
        i = loads.index(min(loads))
        shards[i].append((path, language))
        loads[i] += size
    return [s for s in shards if s] or [[]]


def file_items(files: pd.DataFrame) -> list[tuple[str, str, int]]:
    return list(zip(files["path"], files["language"], files["size_bytes"].astype(int)))


def collect(parts: list[ShardResult], reused: pd.DataFrame | None = None) -> tuple[pd.DataFrame, ShardResult]:
    """One chunk table, sorted by path then position, from shard results in any order and
    the `reused` rows of unchanged files (whole files, in order)."""
    total = ShardResult()
    for part in parts:
        total.merge(part)
    total.chunks.sort(key=lambda c: (c.path, c.start_line))  # stable: keeps a file's order
    table = chunks_frame(total.chunks, total.file_sha256)
    if reused is not None and len(reused):
        table = pd.concat([reused, table], ignore_index=True)
        table = table.sort_values("path", kind="stable", ignore_index=True)  # a file's rows stay in order
    return table, total


def chunk_files(root: Path, files: pd.DataFrame, max_tokens: int, workers: int | None = None,
                encoding_name: str = DEFAULT_ENCODING,
                max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> tuple[pd.DataFrame, ShardResult]:
    """The chunk table for `files` (columns path, language, size_bytes), over `workers`
    processes (default: the CPU count; 1: in this process); files are read with discovery's
    `max_file_bytes`."""
    workers = workers or os.cpu_count() or 1
    shards = plan_shards(file_items(files), workers)
    processes = min(workers, len(shards))
    log.info("chunking %d files in %d shard(s) %s", len(files), len(shards),
             f"over {processes} worker processes" if processes > 1 else "in this process")
    if processes <= 1:
        parts = [chunk_shard(str(root), shard, max_tokens, encoding_name, max_file_bytes) for shard in shards]
    else:
        with ProcessPoolExecutor(processes) as pool:
            parts = list(pool.map(chunk_shard, [str(root)] * len(shards), shards, [max_tokens] * len(shards),
                                  [encoding_name] * len(shards), [max_file_bytes] * len(shards)))
    return collect(parts)


def chunk_repository(path: str | Path, max_tokens: int = 512, parallel: bool = True, max_workers: int | None = None,
                     include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
                     max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> pd.DataFrame:
    """Discover and chunk a working tree; the same code the `code_chunks` asset runs.

    `parallel` chunks shards of files in up to `max_workers` processes (default: the CPU
    count); `parallel=False` chunks in this process. The table is the same either way."""
    root = Path(path).resolve()
    found = discover(root, include, exclude, max_file_bytes)
    files = pd.DataFrame([(f.path, f.language, f.size_bytes) for f in found.files],
                         columns=["path", "language", "size_bytes"])
    table, _ = chunk_files(root, files, max_tokens, (max_workers or None) if parallel else 1,
                           max_file_bytes=max_file_bytes)
    return table
