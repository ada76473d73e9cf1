"""Both sides of an embedding model through the real pipeline: chunks are embedded with the
model's document prefix, the smoke query and searches with its query prefix; the collection
records them and search uses what it recorded; a local model is any sentence-transformers
folder; the cache never mixes vectors of two document prefixes."""

import dagster as dg
import numpy as np
import pytest

from repo_index.core.embed.cache import text_key
from repo_index.core.index.client import ChromaSettings, get_collection, open_client
from repo_index.core.search import SearchError, search
from repo_index.core.settings import Settings, get_settings
from repo_index.definitions import defs, project_resources
from repo_index.partitions import REPOSITORIES
from repo_index_tests.model_folders import copy_bundled_model, direct_vectors
from repo_index_tests.pipeline import cached_keys, expected_chunks, write_python_files


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A registry of one repository `svc` and a fresh instance; `index()` runs the job with
    the environment as it is then."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for name in ("REPO_INDEX_EMBEDDER", "REPO_INDEX_EMBEDDING_MODEL", "REPO_INDEX_LOCAL_MODEL",
                 "REPO_INDEX_QUERY_PREFIX", "REPO_INDEX_DOCUMENT_PREFIX", "REPO_INDEX_EMBEDDING_DIMENSIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REPO_INDEX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REPO_INDEX_REGISTRY", str(tmp_path / "repositories.yaml"))
    from repo_index.core.source.registry import RepoSpec, save_registry

    source = write_python_files(tmp_path / "src", 6)
    save_registry(tmp_path / "repositories.yaml", [RepoSpec("svc", str(source))])
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    instance.add_dynamic_partitions(REPOSITORIES, ["svc"])

    def index() -> dict:
        get_settings.cache_clear()  # the step reads the environment as the test set it
        result = defs.resolve_job_def("index_repository").execute_in_process(
            run_config={"execution": {"config": {"in_process": {}}}}, instance=instance, partition_key="svc",
            resources=project_resources(Settings.from_env()))
        assert result.success
        meta = {e.asset_key.path[-1]: {k: getattr(v, "value", v) for k, v in
                                       e.event_specific_data.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()}
        meta["checks"] = {e.check_name: e for e in result.get_asset_check_evaluations()}
        return meta

    return source, tmp_path / "data", index


def collection_metadata() -> dict:
    settings = Settings.from_env()
    return get_collection(open_client(ChromaSettings.from_settings(settings)), "repo_index-svc").metadata


def test_a_server_model_with_prefixes_gets_them_on_each_side(project, openai_server, monkeypatch):
    source, data, index = project
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sides")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("REPO_INDEX_EMBEDDING_MODEL", "nomic-embed-text")
    monkeypatch.setenv("REPO_INDEX_EMBEDDING_DIMENSIONS", "1536")
    meta = index()
    chunks = expected_chunks(source)
    sent = openai_server.embedded_texts
    documents = [t for t in sent if t.startswith("search_document: ")]
    queries = [t for t in sent if not t.startswith("search_document: ")]
    # Every chunk as a document, and the smoke check's query as a query: nothing else.
    assert sorted(documents) == sorted("search_document: " + t for t in chunks["embedding_text"])
    smoke = meta["checks"]["smoke_query"]
    assert queries == ["search_query: " + smoke.metadata["query"].value] and smoke.passed
    recorded = collection_metadata()
    assert (recorded["embedding_query_prefix"], recorded["embedding_document_prefix"]) == (
        "search_query: ", "search_document: ")
    assert {text_key("search_document: " + t) for t in chunks["embedding_text"]} <= cached_keys(data)

    # Search embeds its query with the prefix the collection recorded, whatever is configured now.
    openai_server.reset_counters()
    monkeypatch.setenv("REPO_INDEX_EMBEDDING_MODEL", "text-embedding-3-small")
    hits = search("compute value 3", repos=["svc"], settings=Settings.from_env())
    assert openai_server.embedded_texts == ["search_query: compute value 3"]
    assert hits[0].path == "src/module_03.py"

    # An unchanged reindex sends nothing; a new document prefix re-embeds every chunk (the
    # vectors cached without it are not reused) and rebuilds the collection with it.
    monkeypatch.setenv("REPO_INDEX_EMBEDDING_MODEL", "nomic-embed-text")
    openai_server.reset_counters()
    assert index()["chunk_embeddings"]["requests"] == 0 and openai_server.requests_total == 0
    monkeypatch.setenv("REPO_INDEX_DOCUMENT_PREFIX", "passage: ")
    meta = index()
    assert (meta["chunk_embeddings"]["reused"], meta["chunk_embeddings"]["embedded"]) == (0, len(chunks))
    assert sorted(t for t in openai_server.embedded_texts if t.startswith("passage: ")) == sorted(
        "passage: " + t for t in chunks["embedding_text"])
    assert meta["vector_collection"]["rebuilt_for_new_model"]
    assert collection_metadata()["embedding_document_prefix"] == "passage: "


def test_the_default_model_keeps_the_keys_of_unprefixed_text_and_reindexes_for_free(project, openai_server,
                                                                                     monkeypatch):
    """Caches written before prefixes existed hold sha256(text) keys: the default models
    (no prefix) must keep using exactly those, or every existing cache would be paid again."""
    source, data, index = project
    monkeypatch.setenv("OPENAI_API_KEY", "sk-default")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    index()
    chunks = expected_chunks(source)
    sent = openai_server.embedded_texts
    assert sorted(sent) == sorted([*chunks["embedding_text"], next(t for t in sent if not t.startswith("# "))])
    assert {text_key(t) for t in chunks["embedding_text"]} <= cached_keys(data)
    openai_server.reset_counters()
    assert index()["chunk_embeddings"]["requests"] == 0 and openai_server.requests_total == 0


def test_a_local_model_folder_indexes_is_recorded_and_serves_search(project, tmp_path, monkeypatch):
    source, data, index = project
    folder = copy_bundled_model(tmp_path / "models" / "team-minilm", {"query": "query: ", "document": "passage: "})
    monkeypatch.setenv("REPO_INDEX_LOCAL_MODEL", str(folder))
    meta = index()
    assert (meta["chunk_embeddings"]["provider"], meta["chunk_embeddings"]["model"]) == ("local", str(folder))
    assert meta["code_chunks"]["max_tokens"] < 200  # the window less the document prefix
    recorded = collection_metadata()
    assert (recorded["embedding_model"], recorded["embedding_provider"], recorded["embedding_query_prefix"],
            recorded["embedding_document_prefix"]) == (str(folder), "local", "query: ", "passage: ")
    # The vectors are the folder's model's, of each chunk with the document prefix.
    chunks = expected_chunks(source, max_tokens=meta["code_chunks"]["max_tokens"])
    got = get_collection(open_client(ChromaSettings.from_settings(Settings.from_env())), "repo_index-svc").get(
        ids=list(chunks["chunk_id"]), include=["embeddings"])
    want = direct_vectors(folder, ["passage: " + t for t in chunks.set_index("chunk_id").loc[got["ids"]]
                                   ["embedding_text"]])
    np.testing.assert_allclose(np.asarray(got["embeddings"]), want, atol=1e-5)

    # Search loads the model the collection recorded, even with the setting gone, and fails
    # naming it once the folder is gone.
    monkeypatch.delenv("REPO_INDEX_LOCAL_MODEL")
    hits = search("compute value 3", repos=["svc"], settings=Settings.from_env())
    assert hits[0].path == "src/module_03.py"
    folder.rename(tmp_path / "models" / "moved")
    with pytest.raises(SearchError, match=f"'svc' was indexed with the local model '{folder}', which cannot be "
                       "loaded: REPO_INDEX_LOCAL_MODEL="):
        search("compute value 3", repos=["svc"], settings=Settings.from_env())
