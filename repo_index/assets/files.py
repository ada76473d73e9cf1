"""repo_files: resolve the repository's source at a commit and discover its files."""

from pathlib import Path

import dagster as dg

from ..config import FilesConfig
from ..core.settings import get_settings
from ..core.source.git import resolve_source
from ..core.source.snapshot import SourceFiles, discover_stamped, source_files
from ..core.source.stat_cache import stats_path
from ..partitions import repositories
from ..resources import RegistryResource, RunLeaseResource


@dg.asset(
    partitions_def=repositories,
    group_name="indexing",
    kinds={"python", "git"},
    description="Files of the repository's working tree at the indexed commit: path, language, size, sha256. "
    "Skipped files are counted by reason in the metadata.",
)
def repo_files(context: dg.AssetExecutionContext, config: FilesConfig, registry: RegistryResource,
               run_lease: RunLeaseResource) -> dg.Output:
    # The lease before the entry is read: a `remove` that held it has unregistered the
    # repository by the time this run gets it, and the run then stops here.
    run_lease.hold(context, context.partition_key)  # before the clone is touched: one run per repository
    spec = registry.spec(context.partition_key)
    tree = resolve_source(spec, registry.file(), Path(registry.clones_dir))
    # A file whose stamps have not changed since it was last hashed (here, or by the
    # freshness check of a local folder, which shares the cache) is not read again.
    found = discover_stamped(tree.root, spec, config.max_file_bytes,
                             stats_path(get_settings().source_stats_dir(), spec.name))
    snapshot: SourceFiles = source_files(spec.name, str(tree.root), tree.commit, found)
    files = snapshot.files
    context.log.info(
        f"{spec.name}: {len(files)} files at {tree.commit or 'working tree'}; "
        f"skipped {sum(found.skipped.values())} ({dict(found.skipped)})"
    )
    return dg.Output(
        snapshot,
        metadata={
            "source": spec.source,
            "ref": spec.ref or "",
            "commit": snapshot.commit,
            "tree_fingerprint": snapshot.tree,
            "max_file_bytes": found.max_file_bytes,  # the sensor fingerprints a folder with the same bound
            "files": len(files),
            "bytes": int(files["size_bytes"].sum()),
            "languages": {k: int(v) for k, v in files["language"].value_counts().items()},
            "skipped": int(sum(found.skipped.values())),
            "skipped_by_reason": dict(found.skipped),
            "skipped_examples": found.skipped_examples,
            "pruned_dirs_by_reason": dict(found.pruned_dirs),
            "pruned_examples": found.pruned_examples,
        },
    )
