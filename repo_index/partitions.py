"""One repository = one partition; the registry sensor and the CLI keep the keys in step."""

import dagster as dg

REPOSITORIES = "repositories"

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
