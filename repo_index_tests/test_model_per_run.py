"""One embedding model per run: a launchpad override of the embedder resource is what
chunking (the budget), embedding, the collection and its checks all use, and the
collection records it; the rest of the configuration still comes from the environment."""

import dagster as dg
import pytest

from repo_index.core.index.client import ChromaSettings, get_collection, open_client
from repo_index.core.settings import Settings
from repo_index.definitions import defs, project_resources
from repo_index.partitions import REPOSITORIES
from repo_index_tests.pipeline import write_python_files


@pytest.fixture
def project(tmp_path, openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-model-per-run")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("REPO_INDEX_EMBEDDER", "local")  # the environment says local; the run says otherwise
    monkeypatch.setenv("REPO_INDEX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REPO_INDEX_REGISTRY", str(tmp_path / "repositories.yaml"))
    from repo_index.core.source.registry import RepoSpec, save_registry

    save_registry(tmp_path / "repositories.yaml", [RepoSpec("svc", str(write_python_files(tmp_path / "src", 6)))])
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    instance.add_dynamic_partitions(REPOSITORIES, ["svc"])
    return instance, Settings.from_env()


def test_a_launchpad_model_override_is_used_by_every_step(project, openai_server):
    instance, settings = project
    job = defs.resolve_job_def("index_repository")
    run_config = {
        "execution": {"config": {"in_process": {}}},
        "resources": {"embedder": {"config": {"provider": "openai", "model": "text-embedding-3-large",
                                              "dimensions": 256}}},
    }
    result = job.execute_in_process(run_config=run_config, instance=instance, partition_key="svc",
                                    resources=project_resources(settings))
    assert result.success
    meta = {}
    for event in result.get_asset_materialization_events():
        meta[event.asset_key.path[-1]] = {k: getattr(v, "value", v) for k, v in
                                          event.event_specific_data.materialization.metadata.items()}
    assert meta["code_chunks"]["max_tokens"] == 512  # text-embedding-3's budget, not MiniLM's 200
    assert (meta["chunk_embeddings"]["model"], meta["chunk_embeddings"]["dimensions"]) == ("text-embedding-3-large", 256)
    assert meta["chunk_embeddings"]["requests"] >= 1 and meta["vector_collection"]["embedding_model"] == "text-embedding-3-large"
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"ids_match_chunks": True, "vector_dimensions": True, "smoke_query": True}
    # Every request (chunks and the smoke query alike) asked the run's model for 256 dimensions.
    assert openai_server.models_seen == {("text-embedding-3-large", 256)}
    coll = get_collection(open_client(ChromaSettings.from_settings(settings)), "repo_index-svc")
    assert (coll.metadata["embedding_model"], coll.metadata["dimensions"], coll.metadata["embedding_provider"],
            coll.metadata["embedding_base_url"]) == ("text-embedding-3-large", 256, "openai", openai_server.base_url)


def test_check_results_are_kept_per_repository(tmp_path, openai_server, monkeypatch):
    """vector_collection's checks are partitioned: each repository has its own result (one
    repository's run no longer overwrites what the UI shows for another)."""
    from repo_index.core.source.registry import RepoSpec, save_registry

    monkeypatch.setenv("OPENAI_API_KEY", "sk-checks")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("REPO_INDEX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REPO_INDEX_REGISTRY", str(tmp_path / "repositories.yaml"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("Plain notes without any definition in them.\n")
    save_registry(tmp_path / "repositories.yaml", [RepoSpec("svc", str(write_python_files(tmp_path / "src", 4))),
                                                  RepoSpec("docs", str(docs))])
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    instance.add_dynamic_partitions(REPOSITORIES, ["svc", "docs"])
    job = defs.resolve_job_def("index_repository")
    for name in ("svc", "docs"):
        result = job.execute_in_process(run_config={"execution": {"config": {"in_process": {}}}}, instance=instance,
                                        partition_key=name, resources=project_resources(Settings.from_env()))
        assert result.success

    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("vector_collection"), "smoke_query"), limit=10)
    by_partition = {}
    for record in history:
        evaluation = record.event.dagster_event.event_specific_data
        by_partition[record.partition] = {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}
    assert set(by_partition) == {"svc", "docs"}
    assert by_partition["docs"]["skipped"] == "no named definition to look for"
    assert by_partition["svc"]["rank"] >= 1 and by_partition["svc"]["expected_symbol"].startswith("compute_value_")
