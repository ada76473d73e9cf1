"""Real servers on free loopback ports, started and stopped by the tests that need them:
Chroma (`chroma run`), PostgreSQL and Redis (`.ci/run` installs Debian's `postgresql` and
`redis-server`; a missing server binary skips the test with that reason)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(cmd: list, ready: Callable[[], bool], what: str, log: Path, timeout_s: float = 60):
    """`cmd` started with its output in `log`, once `ready()` says it serves; stopped after."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while not ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start; see {log}")
                time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _answers(probe: Callable[[], object], errors: tuple[type[BaseException], ...]) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            probe()
            return True
        except errors:
            return False
    return ready


@contextmanager
def chroma_server(path: Path, port: int | None = None):
    """`chroma run` on `path`; yields its port."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/api/v2/heartbeat"
    with running([Path(sys.executable).parent / "chroma", "run", "--path", path, "--host", "127.0.0.1",
                  "--port", port], _answers(lambda: urllib.request.urlopen(url, timeout=1), (OSError,)),
                 "chroma server", path.parent / f"chroma-{port}.log"):
        yield port


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
    import redis

    port = free_port()
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        with running([binary, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                      "--dir", folder], _answers(client.ping, (redis.ConnectionError,)), "redis-server",
                     folder / f"redis-{port}.log", timeout_s=30):
            yield port
    finally:
        client.close()
