"""One repository = one partition; the registry sensor and the CLI keep the keys in step."""

import dagster as dg

REPOSITORIES = "repositories"
# Concurrency pools (limits in dagster.yaml): steps writing embedded Chroma, embedding steps.
CHROMA_POOL = "chroma"
EMBEDDING_POOL = "embedding"

repositories = dg.DynamicPartitionsDefinition(name=REPOSITORIES)


def partition_changes(current: list[str], registered: list[str]) -> tuple[list[str], list[str]]:
    """(to add, to delete) so the partition keys equal the registered names."""
    have, want = set(current), set(registered)
    return sorted(want - have), sorted(have - want)


def sync_partitions(instance: dg.DagsterInstance, registered: list[str]) -> tuple[list[str], list[str]]:
    added, deleted = partition_changes(instance.get_dynamic_partitions(REPOSITORIES), registered)
    if added:
        instance.add_dynamic_partitions(REPOSITORIES, added)
    for key in deleted:
        instance.delete_dynamic_partition(REPOSITORIES, key)
    return added, deleted


def initialize_pools(instance: dg.DagsterInstance) -> None:
    """Create the pools at their default limit before runs start: two runs claiming a pool
    that does not exist yet could both initialize it and both get a slot. Only pools not
    made yet: on PostgreSQL, Dagster's initialization of an existing pool fails (its insert's
    error aborts the transaction its update then needs). Two launchers at once race to make
    the same pool: the loser finds it made on its next try."""
    from sqlalchemy.exc import DBAPIError

    storage = instance.event_log_storage
    for pool in (CHROMA_POOL, EMBEDDING_POOL):
        for attempt in range(3):
            if pool in storage.get_concurrency_keys():
                break
            try:
                storage.initialize_concurrency_limit_to_default(pool)
                break
            except DBAPIError:
                if attempt == 2:
                    raise
