"""The indexing job: the four assets of one repository partition, in order.

The UI's Materialize button, the CLI, the schedule and backfills all run this job. The
executor is the plain multiprocess executor with its defaults in the job's config (a
`.configured()` executor would silently ignore run-config overrides).
"""

import os
import resource

import dagster as dg

from .partitions import repositories

INDEX_JOB = "index_repository"
USAGE_PREFIX = "step usage:"


@dg.success_hook(name="record_step_usage")
def record_step_usage(context: dg.HookContext) -> None:
    """Log the step process's CPU seconds and peak RSS, so runs show what each step costs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    context.log.info(f"{USAGE_PREFIX} cpu_s={usage.ru_utime + usage.ru_stime:.2f} "
                     f"peak_rss_mb={usage.ru_maxrss / 1024:.0f} pid={os.getpid()}")

# The job's default run config. A run config given at launch replaces it as a whole, so
# callers that add to it (the CLI) start from this.
DEFAULT_RUN_CONFIG = {"execution": {"config": {
    # As many chunking steps at once as workers (ChunkingConfig.workers defaults to the CPUs).
    "max_concurrent": os.cpu_count() or 1,
    # Steps fork from a server that has already imported the project and the instance's
    # storage classes (repo_index/preload.py): no per-step import cost.
    "start_method": {"forkserver": {"preload_modules": ["repo_index.preload"]}},
}}}

index_job = dg.define_asset_job(
    INDEX_JOB,
    selection=dg.AssetSelection.groups("indexing"),
    partitions_def=repositories,
    executor_def=dg.multiprocess_executor,
    config=DEFAULT_RUN_CONFIG,
    hooks={record_step_usage},
    description="Discover, chunk, embed and store one repository (one partition).",
)
