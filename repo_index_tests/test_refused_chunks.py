"""Chunks the embedding server refuses (400, context length), through real Dagster runs in
subprocesses against the loopback server and an embedded Chroma: a refused chunk is left
out and named, the rest of the repository is indexed, the next run asks for it again, and
more refusals than REPO_INDEX_MAX_REFUSED_SHARE allows fail the run saying how many."""

from pathlib import Path

import chromadb
import dagster as dg
import pytest

from repo_index_tests.pipeline import (
    assert_collection_exact, expected_chunks, materialize, project_env, register, write_python_files,
)

pytestmark = pytest.mark.slow


def collection(env: dict):
    """The collection as the last run left it: a client of this process caches what it read
    (a run in another process since then would confuse it)."""
    chromadb.api.client.SharedSystemClient.clear_system_cache()
    return chromadb.PersistentClient(path=str(Path(env["REPO_INDEX_DATA_DIR"]) / "chroma")).get_collection(
        "repo_index-svc")


def latest_metadata(env: dict, asset: str) -> dict:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def latest_check(env: dict, check: str) -> tuple[bool, dict]:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [record] = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("vector_collection"), check), limit=1)
    evaluation = record.event.dagster_event.event_specific_data
    return evaluation.passed, {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}


def test_a_refused_chunk_is_left_out_and_named_and_too_many_fail_the_run(tmp_path, openai_server):
    repo = write_python_files(tmp_path / "svc", 30)  # one chunk per file: src/module_NN.py, lines 1-3
    table = expected_chunks(repo)
    assert len(table) == 30
    env = project_env(tmp_path, openai_server.base_url, REPO_INDEX_MAX_REFUSED_SHARE="0.05")  # 1 of 30 may be
    register(env, "svc", repo)
    config = {"batch_size": 8, "max_concurrent": 2}

    # One refused: the run succeeds, the collection holds every other chunk, metadata names it.
    openai_server.refused_substrings = {"compute_value_7("}
    materialize(env, "svc", config)
    refused = table["path"] == "src/module_07.py"
    assert refused.sum() == 1
    assert_collection_exact(collection(env), table[~refused])
    meta = latest_metadata(env, "chunk_embeddings")
    assert meta["refused"] == 1 and meta["embedded"] == 29 and meta["max_refused_share"] == 0.05
    [example] = meta["refused_examples"]
    assert (example["path"], example["start_line"], example["end_line"]) == ("src/module_07.py", 1, 3)
    assert example["chunk_id"] == table[refused]["chunk_id"].item()
    assert "maximum context length" in example["reason"]
    assert latest_metadata(env, "vector_collection")["refused_chunks_left_out"] == 1
    passed, check = latest_check(env, "ids_match_chunks")
    assert passed and (check["missing"], check["orphaned"], check["refused"], check["records"]) == (0, 0, 1, 29)

    # The refusal was not cached as a vector: the next run asks for that chunk, and only it.
    openai_server.refused_substrings = set()
    openai_server.reset_counters()
    materialize(env, "svc", config)
    assert [t for t in openai_server.embedded_texts if "compute_value_" in t] == list(
        table[refused]["embedding_text"])
    assert_collection_exact(collection(env), table)
    assert latest_metadata(env, "chunk_embeddings")["refused"] == 0

    # Three edited files the server refuses: more than the share allows; the run fails and
    # says how many it had refused when it stopped.
    for n in (3, 13, 23):
        path = repo / "src" / f"module_{n:02d}.py"
        path.write_text(path.read_text().replace("return x", "return refused_helper(x)"))
    openai_server.refused_substrings = {"refused_helper"}
    failed = materialize(env, "svc", config, check=False)
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    assert "the embedding server refused 2 of 30 chunks, more than REPO_INDEX_MAX_REFUSED_SHARE=0.05 allows (1)" \
        in output, output[-3000:]
    assert "src/module_" in output and "maximum context length" in output
