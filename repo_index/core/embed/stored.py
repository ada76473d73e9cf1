"""chunk_embeddings as stored between steps: each repository's chunk ids and the cache
keys of their vectors (~100 bytes a chunk; the vectors stay once in the cache), and the
`EmbedResult` rebuilt from them once every vector is checked to be in the cache."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_writer
from .cache import KEY_BYTES, CacheStore
from .results import EmbedResult, EmbedStats, Refusal


def keys_path(folder: Path, repo: str) -> Path:
    """Where the keys of `repo` are stored under `folder` (Settings.embedding_keys_dir)."""
    return Path(folder) / "chunk_embeddings" / f"{repo}.npz"


def save_keys(path: Path, result: EmbedResult) -> None:
    """Write the rebuild recipe of `result` atomically (a reader never sees half a file)."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        chunk_ids=np.asarray(result.chunk_ids, dtype=str),
        keys=np.frombuffer(b"".join(result.keys), dtype=np.uint8).reshape(len(result.keys), KEY_BYTES),
        model=np.asarray(result.model),
        dimensions=np.asarray(result.dimensions),
        # estimate_only results hold no vectors; keep saying so after a reload.
        has_vectors=np.asarray(result.has_vectors),
        # Chunks the server refused have a key but no vector in the cache.
        refused=np.asarray(json.dumps([dataclasses.asdict(r) for r in result.refused])),
    )
    with atomic_writer(path) as fh:
        fh.write(buffer.getvalue())


def stored_form(result: EmbedResult) -> EmbedResult:
    """`result` as load_result rebuilds it from what save_keys wrote (no vectors held)."""
    return _as_stored(list(result.chunk_ids), list(result.keys), result.model, result.dimensions,
                      result.has_vectors, list(result.refused))


def _as_stored(chunk_ids: list[str], keys: list[bytes], model: str, dims: int, has_vectors: bool,
               refused: list[Refusal]) -> EmbedResult:
    """The result as a later step gets it: no vectors held (none at all when estimate_only)."""
    stats = EmbedStats(chunks=len(chunk_ids), refused=len(refused))
    if not has_vectors:
        return EmbedResult(chunk_ids, np.zeros((0, dims), np.float32), model, dims, stats, keys)
    return EmbedResult(chunk_ids, None, model, dims, stats, keys, refused)


def load_result(path: Path, cache: CacheStore, with_vectors: bool = False) -> EmbedResult:
    """The `EmbedResult` saved at `path`, `vectors` None once every vector it references is
    found in `cache` (by key, reading no vector); with `with_vectors` the float32 matrix.

    Raises LookupError naming what is missing when the file or any vector is gone.
    """
    if not path.is_file():
        raise LookupError(f"no stored chunk_embeddings at {path}")
    with np.load(path, allow_pickle=False) as saved:
        chunk_ids = saved["chunk_ids"].tolist()
        raw_keys = saved["keys"]
        model, dims = str(saved["model"]), int(saved["dimensions"])
        has_vectors = bool(saved["has_vectors"])
        refused = [Refusal(**r) for r in json.loads(str(saved["refused"]))] if "refused" in saved else []
    keys = [row.tobytes() for row in raw_keys]
    result = _as_stored(chunk_ids, keys, model, dims, has_vectors, refused)
    if not has_vectors:
        return result
    unique = {keys[i] for i in result.embedded_rows()}
    missing = len(unique) - len(cache.present(model, dims, unique))
    if missing:
        raise LookupError(f"{missing} of the vectors it references are not in the embedding cache {cache.location}")
    if with_vectors and not refused:
        result.vectors = cache.matrix(model, dims, keys)
    elif with_vectors:
        rows = result.embedded_rows()
        result.vectors = np.zeros((len(keys), dims), np.float32)  # refused rows stay zero, as the loop left them
        result.vectors[rows] = cache.matrix(model, dims, [keys[i] for i in rows])
    return result
