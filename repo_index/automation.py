"""Sensors and schedules that keep partitions and indexes in step with the registry."""

import os

import dagster as dg

from .core.registry import RegistryError
from .jobs import INDEX_JOB
from .partitions import REPOSITORIES, partition_changes, repositories
from .resources import RegistryResource


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
    cron_schedule=os.environ.get("REPO_INDEX_NIGHTLY_CRON", "0 2 * * *"),
    execution_timezone=os.environ.get("REPO_INDEX_TIMEZONE", "UTC"),
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
