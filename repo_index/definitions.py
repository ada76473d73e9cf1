"""The one Definitions object; workspace.yaml and `dagster -m repo_index.definitions` load it.

The settings are read here, once per process, and handed to the resources; a bad
environment variable stops the code location with a message naming it."""

import dagster as dg

from .assets.chunks import code_chunks
from .assets.collection import vector_collection
from .assets.embeddings import chunk_embeddings
from .assets.files import repo_files
from .automation import nightly_reindex, registry_sensor, source_change_sensor
from .core.settings import Settings, get_settings
from .io_managers import ChunkTableIOManager, EmbeddingsIOManager
from .jobs import INDEX_JOB, executor_for, index_job, record_step_usage
from .resources import default_resources


def project_resources(settings: Settings) -> dict:
    """Every resource and IO manager the assets use, from one `Settings`."""
    resources = default_resources(settings)
    # Step outputs (the files table, the shards) where every machine reads them when a
    # shared folder is set; else Dagster's default, under the instance's storage folder.
    shared = {"io_manager": dg.FilesystemIOManager(base_dir=str(settings.shared_dir() / "step_outputs"))} \
        if settings.shared_dir_override else {}
    return {
        **resources,
        **shared,
        "embeddings_io_manager": EmbeddingsIOManager(base_dir=str(settings.embedding_keys_dir()),
                                                     cache=resources["vector_cache"]),
        "chunks_io_manager": ChunkTableIOManager(store=resources["chunk_store"]),
    }


defs = dg.Definitions(
    # The hook on the assets and the executor here, not on the job: the UI's Materialize
    # runs the implicit asset job, which must run the assets as `index_repository` does.
    assets=[a.with_hooks({record_step_usage}) for a in (repo_files, code_chunks, chunk_embeddings, vector_collection)],
    executor=executor_for(get_settings()),
    jobs=[index_job],
    sensors=[registry_sensor, source_change_sensor],
    schedules=[nightly_reindex],
    resources=project_resources(get_settings()),
)


def get_index_job() -> dg.JobDefinition:
    """Module-level so `dg.reconstructable` can rebuild the job in step processes."""
    return defs.resolve_job_def(INDEX_JOB)
