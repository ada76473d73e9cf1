"""The one Definitions object; workspace.yaml and `dagster -m repo_index.definitions` load it.

The settings are read here, once per process, and handed to the resources; a bad
environment variable stops the code location with a message naming it."""

import dagster as dg

from .assets.chunks import code_chunks
from .assets.collection import vector_collection
from .assets.embeddings import chunk_embeddings
from .assets.files import repo_files
from .automation import nightly_reindex, registry_sensor, source_change_sensor
from .core.settings import get_settings
from .io_managers import ChunkTableIOManager, EmbeddingsIOManager
from .jobs import INDEX_JOB, index_job
from .resources import default_resources

_settings = get_settings()
_resources = default_resources(_settings)

defs = dg.Definitions(
    assets=[repo_files, code_chunks, chunk_embeddings, vector_collection],
    jobs=[index_job],
    sensors=[registry_sensor, source_change_sensor],
    schedules=[nightly_reindex],
    resources={
        **_resources,
        "embeddings_io_manager": EmbeddingsIOManager(base_dir=str(_settings.embedding_keys_dir()),
                                                     cache=_resources["vector_cache"]),
        "chunks_io_manager": ChunkTableIOManager(store=_resources["chunk_store"]),
    },
)


def get_index_job() -> dg.JobDefinition:
    """Module-level so `dg.reconstructable` can rebuild the job in step processes."""
    return defs.resolve_job_def(INDEX_JOB)
