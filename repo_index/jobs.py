"""The indexing job: the four assets of one repository partition, in order.

The UI's Materialize button, the CLI, the schedule and backfills all run this job. The
executor is the plain multiprocess executor with its defaults in the job's config (a
`.configured()` executor would silently ignore run-config overrides).
"""

import os

import dagster as dg

from .partitions import repositories

INDEX_JOB = "index_repository"

index_job = dg.define_asset_job(
    INDEX_JOB,
    selection=dg.AssetSelection.groups("indexing"),
    partitions_def=repositories,
    executor_def=dg.multiprocess_executor,
    config={"execution": {"config": {
        # As many chunking steps at once as workers (ChunkingConfig.workers defaults to the CPUs).
        "max_concurrent": os.cpu_count() or 1,
        # Steps fork from a server that has already imported the project: no per-step import cost.
        "start_method": {"forkserver": {"preload_modules": ["repo_index.definitions"]}},
    }}},
    description="Discover, chunk, embed and store one repository (one partition).",
)
