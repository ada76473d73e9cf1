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
import urllib.request
from pathlib import Path

import chromadb
import pytest

from repo_index_tests.chroma_server import free_port
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
    from dagster_graphql import DagsterGraphQLClient

    env, port = dagster_dev
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)

    # What the UI's Materialize button does: launch the job for one partition.
    run_id = wait_for(lambda: _try_submit(client), 120, "the code location to load")
    status = wait_for(lambda: _finished(client, run_id), 300, f"run {run_id}")
    assert status == "SUCCESS"
    assert collection_paths(tmp_path, "alpha") == {"svc0/handlers.py"}

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

    # A CLI run is filed where the UI lists the job's runs: under the same repository label
    # as the run the UI launched (the job page and the timeline filter by it).
    sh([BIN / "repo-index", "index", "alpha"], cwd=ROOT, env=env)
    alpha_runs = _run_ids(client, '{key: "dagster/partition", value: "alpha"}')
    filed = _run_ids(client, '{key: ".dagster/repository", value: "__repository__@repo_index"}')
    cli_runs = [rid for rid in alpha_runs if rid != run_id]
    assert len(cli_runs) == 1 and run_id in filed and cli_runs[0] in filed, (alpha_runs, filed)


def _run_ids(client, tag_filter: str = "") -> list[str]:
    """The index_repository runs the webserver lists (with a tag filter, as the UI's job page)."""
    tags = f", tags: [{tag_filter}]" if tag_filter else ""
    result = client._execute(f"""
        query {{ runsOrError(filter: {{pipelineName: "index_repository"{tags}}}) {{
            ... on Runs {{ results {{ runId }} }} }} }}""")
    return [r["runId"] for r in result["runsOrError"]["results"]]


def _try_submit(client):
    from dagster_graphql import DagsterGraphQLClientError

    try:
        return client.submit_job_execution("index_repository", tags={"dagster/partition": "alpha"})
    except DagsterGraphQLClientError:
        return None


def _finished(client, run_id):
    status = client.get_run_status(run_id).value
    return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres(tmp_path):
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (Debian package 'postgresql'; .ci/run installs it)")
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(f"/tmp/repo-index-pg-{os.getpid()}-{free_port()}")
    data.mkdir(mode=0o700)
    if run_as:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    sh([*run_as, bindir / "initdb", "-D", data / "db", "-U", "dagster", "--auth=trust"])
    sh([*run_as, bindir / "pg_ctl", "-D", data / "db", "-l", data / "log", "-w", "start",
        "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1"])
    try:
        sh([*run_as, bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"])
        yield port
    finally:
        subprocess.run([*run_as, bindir / "pg_ctl", "-D", data / "db", "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


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
