"""Faults end to end, through Dagster runs in subprocesses: a misbehaving embedding server, the
embedding step killed with SIGKILL, a Chroma server that is down. Every case ends either
with every vector present and correct or with a clear failure after bounded retries, and
a re-run converges paying only for what was missing."""

import math
import os
import signal
import subprocess
import time
from pathlib import Path

import chromadb
import pytest

from repo_index.core.embed.model import EmbeddingModel
from repo_index.core.index.client import ChromaSettings, ChromaUnavailable, open_client
from repo_index.core.index.sync import sync_collection
from repo_index_tests.services import chroma_server, free_port
from repo_index_tests.fakes.openai_server import Fault
from repo_index_tests.pipeline import (
    API_KEY, assert_collection_exact, expected_chunks, files_containing, index_job_args, materialize, missing_texts,
    project_env, register, write_python_files,
)

pytestmark = pytest.mark.slow
OK = Fault.timeout(0)  # a normal answer, queued between faults


def chunk_counts(server, table) -> dict[str, int]:
    """How many times each chunk text was embedded (answered correctly) by the server."""
    counts = server.embedded_counts
    return {t: counts[t] for t in table["embedding_text"] if counts[t]}


def collection(env: dict, repo: str):
    return chromadb.PersistentClient(path=str(Path(env["REPO_INDEX_DATA_DIR"]) / "chroma")).get_collection(
        f"repo_index-{repo}")


def test_faulty_server_fails_clearly_after_bounded_retries_and_a_rerun_pays_only_for_the_rest(
        tmp_path, openai_server):
    repo = write_python_files(tmp_path / "svc", 40)
    table = expected_chunks(repo)
    assert len(table) == 40
    env = project_env(tmp_path, openai_server.base_url)
    register(env, "svc", repo)
    config = {"max_concurrent": 1, "batch_size": 4, "max_retries": 3}

    # Run 1: each transient fault is retried and recovered; then the server fails for good.
    openai_server.add_faults(
        Fault.status(429, retry_after=0.05), Fault.status(429, retry_after=0.05), Fault.status(429, retry_after=0.05),
        OK, Fault.status(500), OK, Fault.drop(), OK, Fault.drop_mid_response(), OK, Fault.malformed(), OK,
        Fault.wrong_count(), OK)
    openai_server.always(Fault.status(503))
    first = materialize(env, "svc", config, check=False)
    assert first.returncode != 0
    assert "EmbeddingFailed" in first.stdout + first.stderr and "failed after 3 retries" in first.stdout + first.stderr
    # Bounded: the failing batch tried 1 + max_retries times; the batches that took the slot
    # while it backed off stopped when it failed (4 batches were left).
    assert 4 <= openai_server.status_counts[503] <= 4 * (1 + 3)
    first_texts = chunk_counts(openai_server, table)
    assert len(first_texts) == 6 * 4 and set(first_texts.values()) == {1}  # six batches recovered, once each
    assert missing_texts(table, Path(env["REPO_INDEX_DATA_DIR"])) == set(table["embedding_text"]) - set(first_texts)

    # Run 2: vectors of the wrong dimensions cannot be fixed by asking again: no retry, a clear error.
    openai_server.clear_faults()
    openai_server.reset_counters()
    openai_server.add_faults(Fault.wrong_dims())
    second = materialize(env, "svc", config, check=False)
    assert second.returncode != 0
    assert "failed after 0 retries" in second.stderr and "expected vectors of 1536 dimensions" in second.stderr
    # At most one more batch was sent, through the slot the failing request freed, before the stop.
    assert openai_server.requests_total <= 2
    second_texts = chunk_counts(openai_server, table)

    # Run 3, clean: only the texts still missing are paid for, each once.
    missing = missing_texts(table, Path(env["REPO_INDEX_DATA_DIR"]))
    assert len(missing) >= 16 - 4
    openai_server.reset_counters()
    materialize(env, "svc", config)
    third_texts = chunk_counts(openai_server, table)
    assert set(third_texts) == missing and set(third_texts.values()) == {1}
    assert set(third_texts).isdisjoint(first_texts) and len(set(third_texts) & set(second_texts)) <= 4
    smoke_queries = len(openai_server.embedded_texts) - sum(third_texts.values())  # the collection's smoke check
    assert openai_server.requests_total == math.ceil(len(missing) / 4) + smoke_queries
    assert_collection_exact(collection(env, "svc"), table)
    home, data = Path(env["DAGSTER_HOME"]), Path(env["REPO_INDEX_DATA_DIR"])
    outputs = [first.stdout, first.stderr, second.stdout, second.stderr]
    assert files_containing([API_KEY], [home, data], outputs) == []  # exceptions and logs included


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _connected_to(pids: set[int], port: int) -> set[int]:
    """The processes among `pids` holding a TCP connection to 127.0.0.1:`port`."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for pid in pids:
        try:
            fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if inodes & set(fds):
            holders.add(pid)
    return holders


def test_sigkill_of_the_embedding_step_then_a_rerun_converges_without_repeating_work(tmp_path, openai_server):
    repo = write_python_files(tmp_path / "svc", 40)
    table = expected_chunks(repo)
    env = project_env(tmp_path, openai_server.base_url)
    register(env, "svc", repo)
    config = {"max_concurrent": 1, "batch_size": 2}
    data = Path(env["REPO_INDEX_DATA_DIR"])

    openai_server.latency = 0.2
    with open(tmp_path / "run1.log", "w+") as log:
        # The project's job: the embedding step runs in a process of its own, which is killed.
        proc = subprocess.Popen([str(a) for a in index_job_args("svc", config, tmp_path)], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            killed: set[int] = set()
            deadline = time.monotonic() + 240
            while not killed and proc.poll() is None and time.monotonic() < deadline:
                # Midway (6 of 20 batches answered), while the next request is in flight.
                if openai_server.requests_ok >= 6 and openai_server.in_flight:
                    killed = _connected_to(_descendants(proc.pid), openai_server.port)
                    for pid in killed:
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)
            assert killed, "the embedding step was never seen talking to the server"
            assert proc.wait(timeout=120) != 0
        finally:
            if proc.poll() is None:
                proc.kill()
        log.seek(0)
        output = log.read()
    assert "child process for step chunk_embeddings was terminated by signal 9" in output and proc.pid not in killed

    first = chunk_counts(openai_server, table)
    missing = missing_texts(table, data)
    print(f"killed {killed}: {len(first)} texts answered, {len(table) - len(missing)} cached, {len(missing)} missing")
    assert 6 * 2 <= len(first) < len(table)
    # What was paid for was kept, except an answer in flight when the process died: at most
    # that one batch, the last the server answered.
    assert set(first) & missing <= set(openai_server.embedded_texts[-2:])

    openai_server.latency = 0
    openai_server.reset_counters()
    materialize(env, "svc", config)
    second = chunk_counts(openai_server, table)
    assert set(second) == missing and set(second.values()) == {1}  # exactly what the cache lacked, once
    assert len(set(first) & set(second)) <= 2  # nothing paid for twice beyond the lost batch
    smoke_queries = len(openai_server.embedded_texts) - sum(second.values())
    assert openai_server.requests_total == math.ceil(len(missing) / 2) + smoke_queries
    assert_collection_exact(collection(env, "svc"), table)


def test_chroma_server_down_is_a_clear_error_and_after_a_restart_a_rerun_converges(tmp_path, openai_server):
    repo = write_python_files(tmp_path / "svc", 12)
    table = expected_chunks(repo)
    port = free_port()
    env = project_env(tmp_path, openai_server.base_url, REPO_INDEX_CHROMA_MODE="server",
                      REPO_INDEX_CHROMA_PORT=str(port))
    register(env, "svc", repo)

    down = materialize(env, "svc", check=False)
    assert down.returncode != 0
    assert f"ChromaUnavailable: cannot reach the Chroma server at http://127.0.0.1:{port}" in down.stderr
    assert "chroma run" in down.stderr and 'step "vector_collection" failed' in down.stderr  # the fix, the step
    embedded = chunk_counts(openai_server, table)
    assert len(embedded) == len(table)  # the steps before it completed

    openai_server.reset_counters()
    with chroma_server(tmp_path / "chroma", port=port):
        materialize(env, "svc")
        assert chunk_counts(openai_server, table) == {}  # nothing embedded again
        client = chromadb.HttpClient(host="127.0.0.1", port=port)
        assert_collection_exact(client.get_collection("repo_index-svc"), table,
                                data_dir=Path(env["REPO_INDEX_DATA_DIR"]))
    assert files_containing([API_KEY], [Path(env["DAGSTER_HOME"]), Path(env["REPO_INDEX_DATA_DIR"])],
                            [down.stdout, down.stderr]) == []


def test_chroma_server_stopped_mid_sync_names_the_server_and_a_resync_converges(tmp_path):
    import numpy as np
    import pandas as pd

    from repo_index_tests.fakes.openai_server import fake_embedding

    n = 30
    chunks = pd.DataFrame({
        "chunk_id": [f"c{i:03d}" for i in range(n)], "path": [f"f{i}.py" for i in range(n)],
        "language": "python", "start_line": 1, "end_line": 2, "symbol": [f"fn_{i}" for i in range(n)],
        "defines": [f"fn_{i}" for i in range(n)], "header": [f"fn_{i}" for i in range(n)], "n_tokens": 5, "text": [f"def fn_{i}(): pass" for i in range(n)], "content_hash": "h",
    })
    vectors = np.stack([fake_embedding(t, 8) for t in chunks["text"]])

    def sync(client, rows: int):
        return sync_collection(client, "repo_index-svc", chunks[:rows], list(chunks["chunk_id"][:rows]),
                               vectors[:rows], EmbeddingModel("openai", "m", 8, 8191, 512, 0.0), "abc", "svc")

    port = free_port()
    settings = ChromaSettings(mode="server", port=port)
    with pytest.raises(ChromaUnavailable, match=rf"http://127.0.0.1:{port}.*chroma run"):
        open_client(settings)  # down from the start
    with chroma_server(tmp_path / "chroma", port=port):
        client = open_client(settings)
        sync(client, 10)
    with pytest.raises(ChromaUnavailable, match=rf"cannot reach the Chroma server at http://127.0.0.1:{port}"):
        sync(client, n)  # the server went away under an open client
    with chroma_server(tmp_path / "chroma", port=port):
        stats = sync(open_client(settings), n)
        assert (stats.added, stats.unchanged, stats.total) == (n - 10, 10, n)
