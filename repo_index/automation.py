"""Sensors and schedules that keep partitions and indexes in step with the registry."""

import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG

from .core.forget import forget_repository
from .core.run_lease import LeaseBusy
from .core.settings import get_settings
from .core.source.git import SourceError
from .core.source.registry import RegistryError, RegistryNotStated
from .jobs import INDEX_JOB
from .partitions import REPOSITORIES, partition_changes, repositories
from .resources import RegistryResource
from .status import indexed_commit, run_has_ended, source_version

_settings = get_settings()


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps the 'repositories' partitions equal to the entries of repositories.yaml.",
)
def registry_sensor(context: dg.SensorEvaluationContext, registry: RegistryResource):
    try:
        # A missing or empty file is no reason to delete every partition (a daemon started
        # elsewhere, a file being rewritten by hand): only an explicit list is applied.
        names = [s.name for s in registry.specs(stated=True)]
    except RegistryNotStated as exc:
        return dg.SkipReason(f"registry not applied, partitions left as they are: {exc}")
    except RegistryError as exc:
        return dg.SkipReason(f"registry not applied: {exc}")
    added, deleted = partition_changes(context.instance.get_dynamic_partitions(REPOSITORIES), names)
    if not added and not deleted:
        return dg.SkipReason(f"{len(names)} repositories, partitions already in step")
    requests = []
    if added:
        requests.append(repositories.build_add_request(added))
    busy = []
    for name in deleted:  # an entry deleted by hand: forget its index as `repo-index remove` does
        try:
            # A tick never waits: a repository whose run is going keeps its partition until a later tick.
            forgotten = forget_repository(get_settings(), name, run_has_ended(context.instance), wait_s=0)
        except LeaseBusy as exc:
            busy.append(name)
            context.log.info(f"{name} left the registry; forgotten once its run ends: {exc}")
            continue
        context.log.info(f"{name} left the registry; deleted: {', '.join(forgotten) or 'nothing stored'}")
    deleted = [name for name in deleted if name not in busy]
    if deleted:
        requests.append(repositories.build_delete_request(deleted))
    context.log.info(f"partitions: adding {added}, removing {deleted}")
    return dg.SensorResult(dynamic_partitions_requests=requests)


@dg.schedule(
    job_name=INDEX_JOB,
    cron_schedule=_settings.nightly_cron,
    execution_timezone=_settings.timezone,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Reindexes every registered repository nightly; unchanged code costs no embedding requests.",
)
def nightly_reindex(context: dg.ScheduleEvaluationContext):
    keys = sorted(context.instance.get_dynamic_partitions(REPOSITORIES))
    if not keys:
        return dg.SkipReason("no repositories registered")
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    # run_key = day + repository: a tick evaluated twice never launches a second run.
    return [dg.RunRequest(run_key=f"nightly-{day}-{key}", partition_key=key, tags={"repo_index/trigger": "nightly"})
            for key in keys]


MAX_ATTEMPTS = 3  # runs the source-change sensor starts for one head before it waits for another
_RETRYABLE = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def _run_key(instance: dg.DagsterInstance, head_key: str) -> str | None:
    """The run key for a reindex at a head: `REPO@HEAD` once (however many ticks see it),
    then `REPO@HEAD#2`... only after the run of the previous key failed or was cancelled,
    so a failure is retried, at most MAX_ATTEMPTS times; None once they are spent."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        key = head_key if attempt == 1 else f"{head_key}#{attempt}"
        runs = instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: key}), limit=1)
        if not runs or runs[0].status not in _RETRYABLE:
            return key  # new, or already requested and not failed: the same key dedupes it
    return None


@dg.sensor(
    job_name=INDEX_JOB,
    minimum_interval_seconds=_settings.freshness_interval_s,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reindexes a repository when its source head moves past the indexed commit.",
)
def source_change_sensor(context: dg.SensorEvaluationContext, registry: RegistryResource):
    try:
        specs = registry.specs()
    except RegistryError as exc:
        return dg.SkipReason(f"registry not readable: {exc}")
    partitions = set(context.instance.get_dynamic_partitions(REPOSITORIES))
    requests, unreachable, gave_up = [], [], []
    for spec in specs:
        indexed = indexed_commit(context.instance, spec.name)
        if spec.name not in partitions or not indexed:
            continue  # never indexed: that is a backfill's job, not a freshness one
        try:
            head = source_version(context.instance, spec, registry.file())
        except SourceError as exc:
            unreachable.append(spec.name)
            context.log.warning(str(exc))
            continue
        if head and head != indexed:
            run_key = _run_key(context.instance, f"{spec.name}@{head}")
            if run_key is None:
                context.log.warning(f"{spec.name}: {MAX_ATTEMPTS} runs for head {head[:12]} failed; waiting for "
                                    "a new head or a run started by hand")
                gave_up.append(spec.name)
                continue
            context.log.info(f"{spec.name}: source at {head[:12]}, indexed {indexed[:12]}: stale")
            requests.append(dg.RunRequest(run_key=run_key, partition_key=spec.name,
                                          tags={"repo_index/trigger": "source_changed"}))
    if not requests:
        notes = [f"unreachable: {unreachable}"] * bool(unreachable) + [f"failed {MAX_ATTEMPTS} times at their "
                                                                       f"head: {gave_up}"] * bool(gave_up)
        return dg.SkipReason("; ".join(notes) or "all indexed repositories are current")
    return dg.SensorResult(run_requests=requests)
