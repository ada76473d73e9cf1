"""Forgetting a repository: every piece of its state, each through the module that owns it.

Used by `repo-index remove` and by the registry sensor when an entry leaves the registry,
so a repository removed either way leaves no collection, chunk table, embedding keys,
spans file or cache references behind. It holds the repository's run lease, so it waits
for a run of that repository to end rather than delete what the run is writing; the
collection is dropped under the embedded Chroma's write lock, like every other write.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from .chunk.table import ChunkStore
from .embed.cache import open_vector_cache
from .embed.stored import keys_path
from .index.client import ChromaSettings, get_collection, open_client, write_lock
from .index.lexical import delete_index, lexical_path
from .index.spans import spans_path
from .index.sync import REBUILD_SUFFIX
from .run_lease import RepositoryLease
from .source.stat_cache import stats_path
from .settings import Settings


def forget_repository(settings: Settings, name: str, run_has_ended: Callable[[str], bool],
                      wait_s: float = 3600.0, on_wait: Callable[[str], None] | None = None,
                      then: Callable[[], None] | None = None) -> list[str]:
    """Delete everything repo_index keeps for `name`, once no run of it is going
    (`run_has_ended` answers for a run id; `on_wait` hears the run waited for); returns what
    there was to delete. `then` (unregistering it) runs before the lease is given up, so no
    run of the repository can start between the deletion and it."""
    lease, me = RepositoryLease(settings.run_leases_dir(), name), f"forget-{uuid.uuid4().hex}"
    lease.acquire(me, run_has_ended, wait_s, on_wait=on_wait, is_run=False)
    try:
        forgotten = _forget(settings, name)
        if then is not None:
            then()
        return forgotten
    finally:
        lease.release(me)


def _forget(settings: Settings, name: str) -> list[str]:
    chroma = ChromaSettings.from_settings(settings)
    collection = chroma.collection_name(name)
    forgotten = []
    with write_lock(chroma):
        client = open_client(chroma)
        if get_collection(client, collection) is not None:
            client.delete_collection(collection)
            forgotten.append("collection")
        if get_collection(client, collection + REBUILD_SUFFIX) is not None:
            client.delete_collection(collection + REBUILD_SUFFIX)
            forgotten.append("unfinished rebuild")
    files = {"collection spans": spans_path(chroma, collection),
             "chunk table": ChunkStore(settings.chunk_tables_dir()).path(name),
             "embedding keys": keys_path(settings.embedding_keys_dir(), name),
             "source stats": stats_path(settings.source_stats_dir(), name)}
    for what, path in files.items():
        if path.exists():
            path.unlink()
            forgotten.append(what)
    if delete_index(lexical_path(chroma.lexical_dir(), collection)):
        forgotten.append("lexical index")
    with open_vector_cache(settings) as cache:
        if name in cache.owners():  # its references go; vectors no other repository uses are pruned
            forgotten.append(f"cache references ({cache.drop_owner(name)} vectors pruned)")
    return forgotten
