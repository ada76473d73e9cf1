import pytest

from repo_index.core.settings import get_settings
from repo_index_tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture(autouse=True)
def fresh_settings():
    """Each test reads the environment it set up (the settings are read once per process)."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def openai_server():
    """A fresh OpenAI-compatible embeddings server on a free 127.0.0.1 port (see fakes/openai_server.py)."""
    with FakeOpenAIServer() as server:
        yield server
