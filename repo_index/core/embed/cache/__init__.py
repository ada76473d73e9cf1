"""Content-addressed store of embeddings: (model, dimensions, sha256 of embedded text).

One SQLite file shared by every repository and every step process (`schema`). Vectors
are written as responses arrive (`writer`), so a run killed midway keeps every vector it
already paid for. Each vector is stored once however many chunks or repositories share
its text (`store`); which repository uses which vectors, and so which may be pruned, is
in `refs`.
"""

from .keys import KEY_BYTES, text_key
from .store import VectorCache
from .writer import BackgroundWriter

__all__ = ["KEY_BYTES", "BackgroundWriter", "VectorCache", "text_key"]
