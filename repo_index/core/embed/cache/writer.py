"""`BackgroundWriter`: writes the vectors of a run to the cache from a thread of its own."""

from __future__ import annotations

import queue
import threading

import numpy as np

from .vectors import CacheStore


class BackgroundWriter:
    """Writes vectors to a cache from one thread, in arrival order, so the caller (the event
    loop) never waits for SQLite, which releases the GIL while it writes.

    When answers arrive faster than the disk takes them, everything queued meanwhile goes
    in one transaction: each commit rewrites every index page it touched, and random sha256
    keys touch a different page per key, so many small commits cost several times more
    than a few large ones. `close()` waits until everything queued is on disk (also when
    the run failed) and re-raises a write error.
    """

    _DONE = object()

    def __init__(self, cache: CacheStore, model: str, dims: int, max_bytes: int = 64 << 20):
        # The cap is in bytes, not rows: small vectors (48-d) arrive ~30x more rows per
        # second than 1536-d ones, and a cap of a few thousand rows made the writer commit
        # so often that it fell behind the network.
        self.cache, self.model, self.dims = cache, model, dims
        self.max_rows = max(1, max_bytes // (4 * dims))
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vector-cache-writer", daemon=True)
        self._thread.start()

    def put(self, items: list[tuple[bytes, np.ndarray]]) -> None:
        self._queue.put(items)

    def close(self, raise_error: bool = True) -> None:
        self._queue.put(self._DONE)
        self._thread.join()
        if raise_error and self._error is not None:
            raise self._error

    def _run(self) -> None:
        done = False
        while not done:
            rows: list[tuple[bytes, np.ndarray]] = []
            item = self._queue.get()
            while True:
                if item is self._DONE:
                    done = True
                else:
                    rows.extend(item)
                if done or len(rows) >= self.max_rows or self._queue.empty():
                    break
                item = self._queue.get()
            if rows and self._error is None:
                try:
                    self.cache.put_many(self.model, self.dims, rows)
                except BaseException as exc:  # reported by close(); later batches are dropped
                    self._error = exc
