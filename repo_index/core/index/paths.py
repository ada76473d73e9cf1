"""The files a collection holds, and the ones a `--path` glob picks.

Chroma's `where` matches metadata by equality or `$in`, not by pattern, so a glob is
resolved here against the collection's paths and handed to the query as `$in` (Chroma then
searches only those records). Filtering the nearest k×10 records afterwards found nothing
when the files the glob names were not among them. The paths come from the file the last
sync left (spans.py) when its token agrees with the collection, else from Chroma's records
(~40 µs each: most of a search of a large collection, hence the file).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from .client import pages
from .spans import SYNC_TOKEN, saved_paths


def collection_paths(collection, spans_file: Path | None = None) -> list[str]:
    """Every distinct `path` of `collection`'s records, sorted."""
    token = (collection.metadata or {}).get(SYNC_TOKEN)
    paths = saved_paths(spans_file, token, collection.count())
    if paths is not None:
        return paths
    held = {(meta or {}).get("path") for page in pages(collection, ["metadatas"]) for meta in page["metadatas"]}
    return sorted(p for p in held if isinstance(p, str))


def matching_paths(collection, path_glob: str, spans_file: Path | None = None) -> list[str] | None:
    """The paths of `collection` that match `path_glob` (fnmatch, as `--path` always meant:
    `*` also matches `/`), or None when every one does: then there is nothing to filter."""
    held = collection_paths(collection, spans_file)
    matched = fnmatch.filter(held, path_glob)
    return None if len(matched) == len(held) and held else matched
