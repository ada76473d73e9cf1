"""The indexing job and the executor and hook every launch of the assets gets.

The UI's Materialize button runs Dagster's implicit asset job (`__ASSET_JOB`), backfills
and the schedule run `index_repository`, and `dagster asset materialize` runs either: all
of them take the executor from `Definitions(executor=...)` (`executor_for` the settings)
and the hook from the assets themselves (definitions.py), so no launcher runs the assets
differently.
"""

import os
import resource
import warnings

import dagster as dg
from dagster._core.definitions.executor_definition import IN_PROC_CONFIG, MULTI_PROC_CONFIG

from .core.settings import Settings, SettingsError
from .partitions import repositories

INDEX_JOB = "index_repository"
USAGE_PREFIX = "step usage:"


_CPU_SEEN: dict[int, float] = {}  # pid -> CPU seconds at its last step's end


@dg.success_hook(name="record_step_usage")
def record_step_usage(context: dg.HookContext) -> None:
    """Log the step's CPU seconds and its process's peak RSS, so runs show what each step
    costs. A step process forked for the step starts at zero; steps run in one process
    (the in-process executor) each count from the previous one's end."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pid, cpu = os.getpid(), usage.ru_utime + usage.ru_stime
    spent, _CPU_SEEN[pid] = cpu - _CPU_SEEN.get(pid, 0.0), cpu
    context.log.info(f"{USAGE_PREFIX} cpu_s={spent:.2f} peak_rss_mb={usage.ru_maxrss / 1024:.0f} pid={pid}")


# The executor's defaults. A run config that names `multiprocess` replaces them as a whole
# (Dagster does not merge into a selector's default), so callers that add to them start
# from this.
MULTIPROCESS_DEFAULTS = {
    # As many chunking steps at once as workers (ChunkingConfig.workers defaults to the CPUs).
    "max_concurrent": os.cpu_count() or 1,
    # Steps fork from a server that has already imported the project and the instance's
    # storage classes (repo_index/preload.py): no per-step import cost.
    "start_method": {"forkserver": {"preload_modules": ["repo_index.preload"]}},
}


@dg.executor(
    name="repo_index_executor",
    # Dagster's default executor's own choice (`multiprocess` or `in_process`), with our
    # defaults. Not `.configured()`: that would drop the schema and ignore run-config overrides.
    config_schema=dg.Field(dg.Selector({"multiprocess": MULTI_PROC_CONFIG, "in_process": IN_PROC_CONFIG}),
                           default_value={"multiprocess": MULTIPROCESS_DEFAULTS}),
    requirements=dg.multi_or_in_process_executor.get_requirements,
)
def project_executor(init_context: dg.InitExecutorContext):
    """Steps in processes forked from a preloaded forkserver, or all in one process."""
    return dg.multi_or_in_process_executor.executor_creation_fn(init_context)


def celery_executor_for(settings: Settings) -> dg.ExecutorDefinition:
    """Steps as tasks for `dagster-celery` workers, configured by the file the workers start
    with (`dagster-celery worker start -A dagster_celery.app -y FILE`): its
    `execution.config` block names the broker, the result backend and Celery's settings, so
    the orchestrator and the workers cannot disagree about them."""
    if settings.celery_config is None or not settings.celery_config.is_file():
        raise SettingsError("REPO_INDEX_EXECUTOR=celery needs REPO_INDEX_CELERY_CONFIG: the YAML file the workers "
                            f"start with (`dagster-celery worker start -y FILE`); got {settings.celery_config}")
    from dagster_celery import celery_executor
    from dagster_celery.cli import get_config_value_from_yaml

    # dagster-celery registers its task again for every step it submits; Celery warns each time.
    warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already registered")

    return celery_executor.configured(get_config_value_from_yaml(str(settings.celery_config)),
                                      name="repo_index_celery_executor")


def celery_workers(settings: Settings, timeout_s: float = 1.0) -> list[str]:
    """The Celery workers answering on the broker of REPO_INDEX_CELERY_CONFIG now, by name.
    Raises ConnectionError when the broker cannot be reached (its URL, which may hold a
    password, is not in the message)."""
    from dagster_celery.cli import get_app

    app = get_app(str(settings.celery_config))
    try:
        replies = app.control.ping(timeout=timeout_s) or []
    except Exception as exc:  # kombu's and redis' errors, whatever the transport
        raise ConnectionError(f"the Celery broker of {settings.celery_config} cannot be reached "
                              f"({type(exc).__name__})") from None
    return sorted(name for reply in replies for name in reply)


def executor_for(settings: Settings) -> dg.ExecutorDefinition:
    """The executor the settings choose (REPO_INDEX_EXECUTOR): this machine's processes by
    default, Celery workers on a cluster."""
    return celery_executor_for(settings) if settings.executor == "celery" else project_executor


# No executor of its own: the Definitions' one (executor_for), as the implicit asset job.
index_job = dg.define_asset_job(
    INDEX_JOB,
    selection=dg.AssetSelection.groups("indexing"),
    partitions_def=repositories,
    description="Discover, chunk, embed and store one repository (one partition).",
)
