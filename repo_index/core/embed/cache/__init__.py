"""Content-addressed store of embeddings: (model, dimensions, sha256 of embedded text).

One SQLite file shared by every repository and every step process (`schema`, `store`), or
on a cluster one PostgreSQL database every worker shares (`postgres`); `opening` picks
from the settings, and both are the same `vectors.CacheStore` over `sql`. Vectors
are written as responses arrive (`writer`), so a run killed midway keeps every vector it
already paid for. Each vector is stored once however many chunks or repositories share
its text (`store`); which repository uses which vectors, and so which may be pruned, is
in `refs`.
"""

from .keys import KEY_BYTES, text_key
from .opening import open_vector_cache
from .store import VectorCache
from .vectors import CacheStore
from .writer import BackgroundWriter

__all__ = ["KEY_BYTES", "BackgroundWriter", "CacheStore", "VectorCache", "open_vector_cache", "text_key"]
