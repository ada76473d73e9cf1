"""Real PostgreSQL and Redis servers on free loopback ports, started and stopped by the
tests that need them (`.ci/run` installs Debian's `postgresql` and `redis-server`). A
missing server binary skips the test with that reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from repo_index_tests.chroma_server import free_port


def _sh(cmd) -> None:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout}\n{done.stderr}"


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@contextmanager
def postgres_server(database: str = "dagster"):
    """A fresh PostgreSQL cluster (user `dagster`, trust auth, database `database`); yields its port."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (Debian package 'postgresql'; .ci/run installs it)")
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    port = free_port()
    # Under /tmp, not pytest's tmp_path: the postgres user must reach it (and its socket path is short).
    data = Path(tempfile.mkdtemp(prefix=f"repo-index-pg-{port}-"))
    data.chmod(0o700)
    if run_as:
        shutil.chown(data, "postgres", "postgres")
    try:
        _sh([*run_as, bindir / "initdb", "-D", data / "db", "-U", "dagster", "--auth=trust"])
        _sh([*run_as, bindir / "pg_ctl", "-D", data / "db", "-l", data / "log", "-w", "start",
             "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1"])
        try:
            _sh([*run_as, bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", database])
            yield port
        finally:
            subprocess.run([*run_as, bindir / "pg_ctl", "-D", data / "db", "-m", "fast", "-w", "stop"],
                           capture_output=True)
    finally:
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def redis_server(folder: Path):
    """A Redis server with no persistence on a free port; yields its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (Debian package 'redis-server'; .ci/run installs it)")
    port = free_port()
    log = folder / f"redis-{port}.log"
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder), "--logfile", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start; see {log}") from None
                time.sleep(0.1)
        client.close()
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
