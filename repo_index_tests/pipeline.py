"""Helpers for end-to-end tests that run the real pipeline in subprocesses: a temp Dagster
instance, the `repo-index` and `dagster` CLIs, the loopback OpenAI-compatible server, and
checks that a Chroma collection holds exactly what a clean run would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from repo_index.core.embed.cache import text_key
from repo_index.core.chunk.records import embedding_text
from repo_index.core.chunk.repository import chunk_repository
from repo_index_tests.fakes.openai_server import fake_embedding

BIN = Path(sys.executable).parent
API_KEY = "sk-e2e-apikey-0f9c2b7d41a6e8"  # must never be written anywhere


def project_env(tmp_path: Path, base_url: str, **extra: str) -> dict[str, str]:
    """A fresh instance and data folder, the OpenAI provider against `base_url`; `extra`
    sets more REPO_INDEX_* variables (any the caller's shell had are dropped)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("REPO_INDEX_")},
        "DAGSTER_HOME": str(home),
        "REPO_INDEX_DATA_DIR": str(tmp_path / "data"),
        "REPO_INDEX_REGISTRY": str(tmp_path / "repositories.yaml"),
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_BASE_URL": base_url,
        **extra,
    }


def project_home(tmp_path: Path, base_url: str) -> tuple[Path, dict[str, str]]:
    """`project_env` with the project's own dagster.yaml (pools, queue limits) in its home."""
    env = project_env(tmp_path, base_url)
    home = Path(env["DAGSTER_HOME"])
    shutil.copy(Path(__file__).resolve().parents[1] / "dagster.yaml", home / "dagster.yaml")
    return home, env


def run(args: list, env: dict, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


def register(env: dict, name: str, source: Path | str) -> None:
    """What `repo-index add` does (the registry entry and the partition), without its start-up cost."""
    import dagster as dg

    from repo_index.core.source.registry import RepoSpec, add_spec, load_registry, save_registry
    from repo_index.partitions import REPOSITORIES

    registry = Path(env["REPO_INDEX_REGISTRY"])
    save_registry(registry, add_spec(load_registry(registry), RepoSpec(name, str(source))))
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.add_dynamic_partitions(REPOSITORIES, [name])


def materialize_args(partition: str, embedding_config: dict | None = None) -> list:
    """Dagster's own CLI on the project's instance: all four assets of one partition, in one
    process (starting a process per step costs seconds each; `index_job_args` does that)."""
    config: dict = {"execution": {"config": {"in_process": {}}}}
    if embedding_config:
        config["ops"] = {"chunk_embeddings": {"config": embedding_config}}
    return [BIN / "dagster", "asset", "materialize", "-m", "repo_index.definitions", "--select", "*",
            "--partition", partition, "--config-json", json.dumps(config)]


def index_job_args(partition: str, embedding_config: dict, config_dir: Path) -> list:
    """The project's `index_repository` job as the UI and `repo-index index` run it: steps in
    processes forked from a preloaded forkserver."""
    config = config_dir / "run_config.yaml"
    config.write_text(json.dumps({"ops": {"chunk_embeddings": {"config": embedding_config}}}))  # JSON is YAML
    return [BIN / "dagster", "job", "execute", "-m", "repo_index.definitions", "-j", "index_repository",
            "--tags", json.dumps({"dagster/partition": partition}), "-c", config]


def materialize(env: dict, partition: str, embedding_config: dict | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
    return run(materialize_args(partition, embedding_config), env, check=check)


def write_python_files(root: Path, n: int) -> Path:
    """`n` small modules with one distinctly named function each: one chunk per file."""
    for i in range(n):
        path = root / "src" / f"module_{i:02d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'def compute_value_{i}(x):\n    """Return x scaled by {i}."""\n    return x * {i}\n')
    return root


def index_in_process(env: dict, name: str, root: Path, dimensions: int = 256, spans: bool = True):
    """What `vector_collection` leaves for `root` in `env`'s data folder (the lexical index,
    the collection of text-embedding-3-small vectors from the loopback server, and the spans
    file unless not `spans`), built by the core library in this process: seconds where a run
    takes a minute, for tests of search. Returns the ChromaSettings."""
    from repo_index.core.embed.loop import embed_chunks
    from repo_index.core.embed.providers import OpenAIEmbedder
    from repo_index.core.index.client import ChromaSettings, open_client, write_lock
    from repo_index.core.index.lexical import LexicalIndex, lexical_path
    from repo_index.core.index.spans import spans_path
    from repo_index.core.index.sync import sync_collection

    data = Path(env["REPO_INDEX_DATA_DIR"])
    chroma = ChromaSettings(path=str(data / "chroma"), state_dir=str(data / "collection_spans"))
    chunks = chunk_repository(root, max_tokens=512, parallel=False)
    embedder = OpenAIEmbedder(model="text-embedding-3-small", api_key=env["OPENAI_API_KEY"],
                              base_url=env["OPENAI_BASE_URL"], requested_dimensions=dimensions)
    result = embed_chunks(chunks, embedder)
    collection = chroma.collection_name(name)
    with write_lock(chroma), LexicalIndex(lexical_path(chroma.lexical_dir(), collection)) as lexical:
        lexical.sync(chunks, result.chunk_ids)
        sync_collection(open_client(chroma), collection, chunks, result.chunk_ids, result.vectors, embedder.info,
                        "c0ffee", name, spans_file=spans_path(chroma, collection) if spans else None,
                        store_text=False)
    return chroma


def expected_chunks(root: Path, max_tokens: int = 512):
    """The chunk table a clean run builds (the pipeline's own discovery and chunker)."""
    table = chunk_repository(root, max_tokens=max_tokens, parallel=False)
    table["embedding_text"] = [embedding_text(p, h, t) for p, h, t in zip(table["path"], table["header"], table["text"])]
    return table


def cached_keys(data_dir: Path) -> set[bytes]:
    import sqlite3

    with sqlite3.connect(data_dir / "embeddings.sqlite") as db:
        return {key for (key,) in db.execute("SELECT key FROM vectors")}


def missing_texts(table, data_dir: Path) -> set[str]:
    have = cached_keys(data_dir)
    return {t for t in table["embedding_text"] if text_key(t) not in have}


def _lexical_index(collection, data_dir: Path | None):
    """The lexical index of a collection the pipeline synced, in the data folder (`data_dir`;
    by default the one holding the embedded Chroma folder)."""
    from repo_index.core.index.lexical import LexicalIndex, lexical_path

    data_dir = data_dir or Path(collection._client.get_settings().persist_directory).parent
    return LexicalIndex(lexical_path(data_dir / "lexical", collection.name), create=False)


def stored_texts(collection, data_dir: Path | None = None) -> dict[str, str]:
    """Each record's text as search reads it: the Chroma document, else (a collection the
    pipeline synced, which stores none) the lexical index (`data_dir`: see _lexical_index)."""
    got = collection.get(include=["documents"])
    texts = {cid: doc for cid, doc in zip(got["ids"], got["documents"]) if doc is not None}
    if len(texts) < len(got["ids"]):
        with _lexical_index(collection, data_dir) as index:
            texts = {**index.texts([cid for cid in got["ids"] if cid not in texts]), **texts}
    return texts


def stored_places(collection, data_dir: Path | None = None) -> dict:
    """Each record's place (path, lines, symbol, defines, language) as search reads it:
    from the lexical index (`data_dir`: see _lexical_index)."""
    with _lexical_index(collection, data_dir) as index:
        return index.places(collection.get(include=[])["ids"])


def assert_collection_exact(collection, table, commit_prefix: str = "", data_dir: Path | None = None) -> None:
    """Exactly the chunks of `table`: ids, text, places and the right vector each, the
    records carrying path and language (`data_dir`: see _lexical_index; needed for a Chroma
    server's collection), the collection the commit."""
    got = collection.get(include=["metadatas", "embeddings"])
    assert sorted(got["ids"]) == sorted(table["chunk_id"]), "ids differ from a clean run's"
    rows = {r.chunk_id: r for r in table.itertuples(index=False)}
    texts, places = stored_texts(collection, data_dir), stored_places(collection, data_dir)
    for cid, meta, vector in zip(got["ids"], got["metadatas"], got["embeddings"]):
        row, place = rows[cid], places[cid]
        assert texts.get(cid) == row.text
        assert (meta["path"], meta["language"]) == (row.path, row.language)
        assert (place.path, place.start_line, place.end_line, place.symbol, place.defines, place.language) == (
            row.path, row.start_line, row.end_line, row.symbol, row.defines, row.language)
        np.testing.assert_allclose(np.asarray(vector), fake_embedding(row.embedding_text, len(vector)), atol=1e-6)
    assert collection.metadata["commit"].startswith(commit_prefix)


def files_containing(needles: list[str], roots: list[Path], outputs: list[str] = ()) -> list[str]:
    """Where any of `needles` appears: files under `roots` (bytes) and captured outputs."""
    hits = []
    encoded = [n.encode() for n in needles]
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                hits += [f"{path}: {n.decode()}" for n in encoded if n in data]
    for i, text in enumerate(outputs):
        hits += [f"output {i}: {n}" for n in needles if n in text]
    return hits


def assert_stages_never_interleaved(instance, runs, second_waited_for_lease: bool = True) -> None:
    """Two runs of one repository: the second got the repository only once the first run's
    last stage (the sync) was under way (and, if asked, its first stage waited for the lease)."""
    from dagster._core.events import DagsterEventType

    done, started = DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_START
    timelines = []
    for run in runs:
        records = [r.event_log_entry for r in instance.get_records_for_run(run.run_id).records]
        steps = {(e.step_key, e.dagster_event.event_type): e.timestamp for e in records
                 if e.dagster_event and e.dagster_event.event_type in (started, done)}
        waited = any("waiting for run" in (e.user_message or "") for e in records)
        timelines.append((steps[("repo_files", done)], steps, waited))
    assert len(timelines) == 2, timelines
    (_, first, first_waited), (_, second, second_waited) = sorted(timelines, key=lambda t: t[0])
    assert not first_waited and second_waited == second_waited_for_lease
    assert second[("repo_files", done)] >= first[("vector_collection", started)]
