"""repo_files: resolve the repository's source at a commit and discover its files."""

import hashlib

import dagster as dg
import pandas as pd

from ..config import FilesConfig
from ..core import paths
from ..core.source.discovery import discover
from ..core.source.git import resolve_source
from ..partitions import repositories
from ..resources import RegistryResource

FILE_COLUMNS = ["path", "language", "size_bytes", "sha256"]


def tree_fingerprint(files: pd.DataFrame) -> str:
    """Identifies the indexed content when there is no commit (or the tree is dirty)."""
    digest = hashlib.sha256()
    for path, sha in zip(files["path"], files["sha256"]):
        digest.update(f"{path}\0{sha}\n".encode())
    return digest.hexdigest()[:16]


@dg.asset(
    partitions_def=repositories,
    group_name="indexing",
    kinds={"python", "git"},
    description="Files of the repository's working tree at the indexed commit: path, language, size, sha256. "
    "Skipped files are counted by reason in the metadata.",
)
def repo_files(context: dg.AssetExecutionContext, config: FilesConfig, registry: RegistryResource) -> dg.Output:
    spec = registry.spec(context.partition_key)
    tree = resolve_source(spec, registry.file(), paths.data_dir() / "sources")
    found = discover(tree.root, spec.include, spec.exclude, config.max_file_bytes)
    files = pd.DataFrame([(f.path, f.language, f.size_bytes, f.sha256) for f in found.files], columns=FILE_COLUMNS)
    files = files.astype({"size_bytes": "int64"})
    fingerprint = tree_fingerprint(files)
    files.attrs = {"root": str(tree.root), "commit": tree.commit or "", "tree": fingerprint, "repo": spec.name}
    context.log.info(
        f"{spec.name}: {len(files)} files at {tree.commit or 'working tree'}; "
        f"skipped {sum(found.skipped.values())} ({dict(found.skipped)})"
    )
    return dg.Output(
        files,
        metadata={
            "source": spec.source,
            "ref": spec.ref or "",
            "commit": tree.commit or "",
            "tree_fingerprint": fingerprint,
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
