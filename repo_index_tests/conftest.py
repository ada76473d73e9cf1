import pytest

from repo_index_tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture
def openai_server():
    """A fresh OpenAI-compatible embeddings server on a free 127.0.0.1 port (see fakes/openai_server.py)."""
    with FakeOpenAIServer() as server:
        yield server
