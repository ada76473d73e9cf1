"""Operating it as users do: `dagster dev` (webserver + daemon) on a free loopback port, a
materialization launched through the webserver's GraphQL API, a backfill of two
partitions launched with `dagster job backfill` and run by the daemon, and the instance
on a real PostgreSQL server."""

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
import urllib.request
from pathlib import Path

import chromadb
import pytest
from dagster_graphql import DagsterGraphQLClient

from repo_index.jobs import USAGE_PREFIX
from repo_index_tests.services import free_port, postgres_server
from repo_index_tests.gitutil import make_repo

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def source(i: int) -> dict[str, str]:
    return {f"svc{i}/handlers.py": "\n\n".join(
        f"def handle_request_{j}(request):\n    return request.reply({j} * {i})\n" for j in range(20))}


def project_env(tmp_path, server, dagster_yaml: str | None = None) -> dict:
    home = tmp_path / "home"
    home.mkdir()
    if dagster_yaml is None:
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text(dagster_yaml)
    return {**os.environ, "DAGSTER_HOME": str(home), "REPO_INDEX_DATA_DIR": str(tmp_path / "data"),
            "REPO_INDEX_REGISTRY": str(tmp_path / "repositories.yaml"), "OPENAI_API_KEY": "k",
            "OPENAI_BASE_URL": server.base_url}


def register(tmp_path, env, names):
    for i, name in enumerate(names):
        src = make_repo(tmp_path / f"src-{name}", source(i))
        sh([BIN / "repo-index", "add", name, str(src)], env=env)


def collection_paths(tmp_path, name) -> set[str]:
    client = chromadb.PersistentClient(path=str(tmp_path / "data" / "chroma"))
    return {m["path"] for m in client.get_collection(f"repo_index-{name}").get(include=["metadatas"])["metadatas"]}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def dagster_dev(tmp_path, openai_server):
    env = project_env(tmp_path, openai_server)
    register(tmp_path, env, ["alpha", "beta", "gamma"])
    port = free_port()
    log = open(tmp_path / "dagster-dev.log", "wb")
    proc = subprocess.Popen([BIN / "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def up():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).status == 200
        except OSError:
            return proc.poll() is not None and pytest.fail("dagster dev exited; see dagster-dev.log")

    try:
        wait_for(up, 120, "the webserver")
        yield env, port
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
def test_ui_materialization_and_cli_backfill_with_the_daemon(tmp_path, dagster_dev):
    env, port = dagster_dev
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)

    # What the UI's Materialize button does: the implicit asset job, four assets, one partition.
    run_id = wait_for(lambda: _try_materialize(client), 120, "the code location to load")
    status = wait_for(lambda: _finished(client, run_id), 300, f"run {run_id}")
    assert status == "SUCCESS"
    assert collection_paths(tmp_path, "alpha") == {"svc0/handlers.py"}
    # It ran as `index_repository` runs do: the project's executor and the step-usage hook.
    logged = _logs(env, run_id)
    assert "Executing steps using multiprocess executor" in logged[""]
    assert all(f"{USAGE_PREFIX} " in logged.get(step, "") for step in (
        "repo_files", "code_chunks.split_files", "chunk_embeddings", "vector_collection")), logged

    # A backfill of two partitions from the CLI; the daemon launches and runs it.
    sh([BIN / "dagster", "job", "backfill", "-w", "workspace.yaml", "-j", "index_repository",
        "--partitions", "beta,gamma", "--noprompt"], cwd=ROOT, env=env)

    def both_indexed():
        try:
            return collection_paths(tmp_path, "beta") and collection_paths(tmp_path, "gamma")
        except Exception:  # collection not created yet
            return False

    wait_for(both_indexed, 420, "the backfill")
    assert collection_paths(tmp_path, "beta") == {"svc1/handlers.py"}
    assert collection_paths(tmp_path, "gamma") == {"svc2/handlers.py"}

    # With a daemon running, the CLI queues its run as the UI does: it is filed under the job
    # (the job page and the timeline filter by the repository label) and the daemon runs it.
    out = sh([BIN / "repo-index", "index", "alpha"], cwd=ROOT, env=env)
    assert "a daemon is running" in out and "queued" in out and "alpha @ " in out, out
    # Run here on request (or when no daemon runs): the same origin, so the UI can re-execute it.
    out = sh([BIN / "repo-index", "index", "alpha", "--in-process"], cwd=ROOT, env=env)
    assert "running in this process" in out, out
    cli_runs = _run_ids(client, '{key: "dagster/partition", value: "alpha"}')
    filed = _run_ids(client, '{key: ".dagster/repository", value: "__repository__@repo_index"}')
    assert len(cli_runs) == 2 and set(cli_runs) <= set(filed), (cli_runs, filed)
    for cli_run in cli_runs:
        rerun = _reexecute(client, cli_run)
        assert wait_for(lambda: _finished(client, rerun), 300, f"re-execution {rerun}") == "SUCCESS"
    assert collection_paths(tmp_path, "alpha") == {"svc0/handlers.py"}


@pytest.mark.slow
def test_a_schedule_run_overlapping_a_cli_run_waits_for_it(tmp_path, dagster_dev, openai_server):
    """The nightly schedule's run of a repository requested while `repo-index index` runs it
    in its own process: the two never interleave and the collection is one clean run's."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from repo_index.automation import nightly_reindex
    from repo_index_tests.pipeline import assert_collection_exact, assert_stages_never_interleaved, expected_chunks

    env, port = dagster_dev
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    wait_for(lambda: _location_loaded(client), 120, "the code location to load")
    openai_server.latency = 0.5  # the CLI run is still embedding when the schedule's run arrives
    cli = subprocess.Popen([BIN / "repo-index", "index", "alpha", "--in-process"], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
        wait_for(lambda: instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])), 120,
                 "the CLI run to start")
        # The tick as the daemon evaluates it, its request for alpha launched as the daemon does.
        tick = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.now(timezone.utc))
        request = next(r for r in nightly_reindex(tick) if r.partition_key == "alpha")
        scheduled = client.submit_job_execution(
            "index_repository", tags={**request.tags, "dagster/partition": "alpha",
                                      "dagster/schedule_name": "nightly_reindex"})
        out = cli.communicate(timeout=600)[0]
        assert cli.returncode == 0, out
        assert wait_for(lambda: _finished(client, scheduled), 300, "the scheduled run") == "SUCCESS"
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": "alpha"}))
        assert_stages_never_interleaved(instance, runs, second_waited_for_lease=False)
    client_db = chromadb.PersistentClient(path=str(tmp_path / "data" / "chroma"))
    assert_collection_exact(client_db.get_collection("repo_index-alpha"), expected_chunks(tmp_path / "src-alpha"))


def _location_loaded(client) -> bool:
    result = client._execute("""query { workspaceOrError { ... on Workspace { locationEntries {
        locationOrLoadError { __typename } } } } }""")
    return [e["locationOrLoadError"]["__typename"] for e in result["workspaceOrError"]["locationEntries"]] == [
        "RepositoryLocation"]


def _reexecute(client, parent: str) -> str:
    """What the UI's Re-execute button sends: all steps of the parent run, under its origin."""
    result = client._execute(f"""mutation {{ launchPipelineReexecution(reexecutionParams: {{
        parentRunId: "{parent}", strategy: ALL_STEPS}}) {{
          __typename ... on LaunchRunSuccess {{ run {{ runId }} }} ... on PythonError {{ message }} }} }}""")
    answer = result["launchPipelineReexecution"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


def _run_ids(client, tag_filter: str = "") -> list[str]:
    """The index_repository runs the webserver lists (with a tag filter, as the UI's job page)."""
    tags = f", tags: [{tag_filter}]" if tag_filter else ""
    result = client._execute(f"""
        query {{ runsOrError(filter: {{pipelineName: "index_repository"{tags}}}) {{
            ... on Runs {{ results {{ runId }} }} }} }}""")
    return [r["runId"] for r in result["runsOrError"]["results"]]


def _try_materialize(client):
    """The UI's Materialize of all four assets for partition alpha (None until the code loads)."""
    assets = ", ".join(f'{{path: ["{a}"]}}' for a in ("repo_files", "code_chunks", "chunk_embeddings",
                                                        "vector_collection"))
    result = client._execute(f"""mutation {{ launchRun(executionParams: {{
        selector: {{repositoryLocationName: "repo_index", repositoryName: "__repository__",
                   pipelineName: "__ASSET_JOB", assetSelection: [{assets}]}},
        executionMetadata: {{tags: [{{key: "dagster/partition", value: "alpha"}}]}}}}) {{
          __typename ... on LaunchRunSuccess {{ run {{ runId }} }} }} }}""")
    answer = result["launchRun"]
    return answer["run"]["runId"] if answer["__typename"] == "LaunchRunSuccess" else None


def _logs(env, run_id) -> dict[str, str]:
    """A run's log messages, joined per step (engine messages under the empty key)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    by_step: dict[str, str] = {}
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
        for entry in instance.all_logs(run_id):
            key = entry.step_key or ""
            by_step[key] = by_step.get(key, "") + "\n" + (entry.user_message or "")
    return {**by_step, "": by_step.get("", "")}


def _finished(client, run_id):
    status = client.get_run_status(run_id).value
    return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None


@pytest.fixture
def postgres():
    with postgres_server() as port:
        yield port


@pytest.mark.slow
def test_materialization_on_a_postgres_instance(tmp_path, postgres, openai_server):
    config = (ROOT / "dagster.yaml").read_text() + f"""
storage:
  postgres:
    # The driver is explicit: SQLAlchemy 2.1 defaults to psycopg 3, dagster-postgres ships psycopg2.
    postgres_url: postgresql+psycopg2://dagster@127.0.0.1:{postgres}/dagster
"""
    env = project_env(tmp_path, openai_server, config)
    register(tmp_path, env, ["pg-demo"])
    sh([BIN / "dagster", "asset", "materialize", "-m", "repo_index.definitions", "--select", "*",
        "--partition", "pg-demo"], env=env, timeout=600)
    assert collection_paths(tmp_path, "pg-demo") == {"svc0/handlers.py"}
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
        assert "Postgres" in type(instance.run_storage).__name__
        assert instance.get_dynamic_partitions("repositories") == ["pg-demo"]
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].is_success
