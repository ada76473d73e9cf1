import shutil
from pathlib import Path

import pytest

from repo_index.core.settings import get_settings
from repo_index_tests.fakes.openai_server import FakeOpenAIServer

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def own_data_and_instance(tmp_path_factory):
    """No test writes into the project's own data folder, registry or Dagster instance (the
    developer's indexes, repositories and run history; `make test` runs with DAGSTER_HOME
    set to the project): unless a test sets its own, they are a session's temp folders,
    the instance configured by the project's dagster.yaml."""
    patch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    patch.setenv("DAGSTER_HOME", str(home))
    patch.setenv("REPO_INDEX_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    patch.setenv("REPO_INDEX_REGISTRY", str(tmp_path_factory.mktemp("registry") / "repositories.yaml"))
    for name in ("REPO_INDEX_SHARED_DIR", "REPO_INDEX_CACHE_URL", "REPO_INDEX_EXECUTOR", "REPO_INDEX_CELERY_CONFIG",
                 "REPO_INDEX_SERVER_URL", "REPO_INDEX_CHROMA_MODE", "REPO_INDEX_CHROMA_PATH"):
        patch.delenv(name, raising=False)  # a developer's cluster settings are not the tests'
    get_settings.cache_clear()
    yield
    patch.undo()


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
