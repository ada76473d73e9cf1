"""Sensors and schedules that keep partitions and indexes in step with the registry."""

import dagster as dg

from .core.settings import get_settings
from .core.source.git import SourceError, current_head
from .core.source.registry import RegistryError
from .jobs import INDEX_JOB
from .partitions import REPOSITORIES, partition_changes, repositories
from .resources import RegistryResource
from .status import indexed_commit

_settings = get_settings()


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps the 'repositories' partitions equal to the entries of repositories.yaml.",
)
def registry_sensor(context: dg.SensorEvaluationContext, registry: RegistryResource):
    try:
        names = [s.name for s in registry.specs()]
    except RegistryError as exc:
        return dg.SkipReason(f"registry not applied: {exc}")
    added, deleted = partition_changes(context.instance.get_dynamic_partitions(REPOSITORIES), names)
    if not added and not deleted:
        return dg.SkipReason(f"{len(names)} repositories, partitions already in step")
    requests = []
    if added:
        requests.append(repositories.build_add_request(added))
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
    requests, unreachable = [], []
    for spec in specs:
        indexed = indexed_commit(context.instance, spec.name)
        if spec.name not in partitions or not indexed:
            continue  # never indexed: that is a backfill's job, not a freshness one
        try:
            head = current_head(spec, registry.file())
        except SourceError as exc:
            unreachable.append(spec.name)
            context.log.warning(str(exc))
            continue
        if head and head != indexed:
            context.log.info(f"{spec.name}: source at {head[:12]}, indexed {indexed[:12]}: stale")
            # One run per new head, however many ticks see it.
            requests.append(dg.RunRequest(run_key=f"{spec.name}@{head}", partition_key=spec.name,
                                          tags={"repo_index/trigger": "source_changed"}))
    if not requests:
        return dg.SkipReason(f"all indexed repositories are current{f'; unreachable: {unreachable}' if unreachable else ''}")
    return dg.SensorResult(run_requests=requests)
