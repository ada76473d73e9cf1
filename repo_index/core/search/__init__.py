"""Search over the indexed repositories: `from repo_index.core.search import search`."""

from .query import SearchError, embed_query, search

__all__ = ["SearchError", "embed_query", "search"]
