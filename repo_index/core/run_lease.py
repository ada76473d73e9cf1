"""One run per repository at a time, however the runs were started.

Each repository's state (its clone, chunk table, embedding keys, cache references, spans
file) is shared by every run of it, so two runs of one repository must never interleave.
The run queue keeps queued runs of one partition apart; this lease also covers the runs
that bypass the queue (`repo-index index`, `dagster asset materialize`). Every stage of a
run takes the lease before it touches the repository's state: a stage of another run
waits until the holder's run has ended (successfully or not: a crashed run holds nothing),
and gives up with a message naming the holder after `wait_s`.

The lease is a small file naming the holding run and the process that runs it (host and
pid), read and written under a file lock. A holder is gone when the caller says its run
has ended (the Dagster instance knows) or when its process on this host is no longer
alive (a run killed outright is never marked ended without the daemon), so the lease needs
no heartbeat and no cleanup after a crash.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

POLL_S = 1.0


class LeaseBusy(RuntimeError):
    """Another run of the repository kept the lease for longer than the caller would wait."""


class RepositoryLease:
    def __init__(self, folder: Path, repo: str):
        self.folder = Path(folder)
        self.path = self.folder / f"{repo}.run"
        self.repo = repo

    def _read(self) -> dict:
        try:
            held = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return held if isinstance(held, dict) and isinstance(held.get("run"), str) else {}

    def holder(self) -> str | None:
        """The run holding the lease (it may have ended since)."""
        return self._read().get("run")

    def acquire(self, run_id: str, has_ended: Callable[[str], bool], wait_s: float = 3600.0,
                on_wait: Callable[[str], None] | None = None, worker_pid: int | None = None,
                is_run: bool = True) -> None:
        """Hold the lease for `run_id` (again, if it holds it already), run by process
        `worker_pid` (default this one); wait while a run that is still going holds it.
        `is_run=False` for a holder that is no Dagster run (forgetting a repository): only
        its process tells whether it is still going. Raises LeaseBusy after `wait_s`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_s
        told = False
        mine = {"run": run_id, "host": socket.gethostname(), "pid": worker_pid or os.getpid(), "is_run": is_run}
        while True:
            with FileLock(str(self.path) + ".lock"):
                held = self._read()
                holder = held.get("run")
                if holder is None or holder == run_id or _process_gone(held) or (
                        held.get("is_run", True) and has_ended(holder)):
                    self.path.write_text(json.dumps(mine))
                    return
            if time.monotonic() >= deadline:
                raise LeaseBusy(f"another run of {self.repo!r} ({holder}) is still in progress after "
                                f"{wait_s:.0f}s; this run did not touch the repository's state")
            if on_wait is not None and not told:
                on_wait(holder)
                told = True
            time.sleep(POLL_S)

    def release(self, run_id: str) -> None:
        """Give the lease up, if `run_id` holds it (a run that ended holds nothing anyway)."""
        if not self.path.exists():
            return
        with FileLock(str(self.path) + ".lock"):
            if self.holder() == run_id:
                self.path.unlink(missing_ok=True)


def _process_gone(held: dict) -> bool:
    """Whether the holder's process, on this host, no longer exists."""
    if held.get("host") != socket.gethostname() or not isinstance(held.get("pid"), int):
        return False  # another machine's run: only its run status says it ended
    return process_gone(held["pid"])


def process_gone(pid: int) -> bool:
    """Whether no process `pid` exists on this host (one we may not signal still exists)."""
    if pid <= 0:
        return False  # 0 and negatives address process groups, not a process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
