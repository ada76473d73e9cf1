"""A query longer than the model reads is refused; one that cannot be (no more UTF-8 bytes
than the window has tokens) is embedded without loading the tiktoken encoding, which
every in-process `repo-index search` paid for (~0.13 s)."""

import numpy as np
import pytest

from repo_index.core.chunk.tokens import get_encoding
from repo_index.core.embed.providers import OpenAIEmbedder
from repo_index.core.search.query import SearchError, embed_query
from repo_index_tests.fakes.openai_server import fake_embedding


def embedder_for(server) -> OpenAIEmbedder:
    return OpenAIEmbedder(api_key="test-key", base_url=server.base_url, timeout_s=5)


def test_a_short_query_is_embedded_without_loading_the_encoding(openai_server):
    get_encoding.cache_clear()
    vector = embed_query(embedder_for(openai_server), "parse the config file")
    np.testing.assert_allclose(vector, fake_embedding("parse the config file", 1536), atol=1e-6)
    assert get_encoding.cache_info().misses == 0


def test_the_window_is_counted_in_tokens_once_the_bytes_exceed_it(openai_server):
    embedder = embedder_for(openai_server)
    window = embedder.info.window_tokens
    many_bytes_few_tokens = "a" * (window + 100)  # a run of one letter: far fewer tokens than bytes
    vector = embed_query(embedder, many_bytes_few_tokens)
    np.testing.assert_allclose(vector, fake_embedding(many_bytes_few_tokens, 1536), atol=1e-6)
    with pytest.raises(SearchError, match=f"longer than text-embedding-3-small reads \\({window} tokens\\)"):
        embed_query(embedder, "word " * (window + 1))
