"""The per-repository lease: a second run waits for the first to end, a crashed run
holds nothing, and a run that waited too long says who holds the repository."""

import threading
import time

import pytest

from repo_index.core.run_lease import LeaseBusy, RepositoryLease


def test_a_second_run_waits_until_the_holder_has_ended(tmp_path):
    ended: set[str] = set()
    lease = RepositoryLease(tmp_path, "svc")
    lease.acquire("run-a", ended.__contains__)
    lease.acquire("run-a", ended.__contains__)  # every stage of the holder takes it again at once
    got = []
    waiter = threading.Thread(target=lambda: (lease.acquire("run-b", ended.__contains__, wait_s=30),
                                               got.append(time.monotonic())))
    waiter.start()
    time.sleep(1.5)
    assert not got and lease.holder() == "run-a"
    ended.add("run-a")  # run-a crashed or finished without releasing: it holds nothing
    released_at = time.monotonic()
    waiter.join(10)
    assert got and got[0] >= released_at and lease.holder() == "run-b"
    lease.release("run-a")  # not the holder: nothing happens
    assert lease.holder() == "run-b"
    lease.release("run-b")
    assert lease.holder() is None


def test_a_run_that_waited_too_long_names_the_holder(tmp_path):
    lease = RepositoryLease(tmp_path, "svc")
    lease.acquire("run-a", lambda run: False)
    with pytest.raises(LeaseBusy, match="another run of 'svc' \\(run-a\\) is still in progress"):
        lease.acquire("run-b", lambda run: False, wait_s=0.1)
    assert RepositoryLease(tmp_path, "other").holder() is None  # per repository


def test_a_run_whose_process_died_holds_nothing(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    lease = RepositoryLease(tmp_path, "svc")
    # Killed outright: its run was never marked ended, but its process is gone.
    lease.acquire("run-killed", lambda run: False, worker_pid=int(dead.stdout))
    lease.acquire("run-next", lambda run: False, wait_s=0.1)
    assert lease.holder() == "run-next"
    # A live holder is waited for.
    with pytest.raises(LeaseBusy):
        lease.acquire("run-third", lambda run: False, wait_s=0.1)


def test_a_holder_that_is_no_run_is_known_by_its_process(tmp_path):
    # Forgetting a repository holds the lease under an id the instance does not know
    # ("ended" to it): only its process says whether it is still going.
    lease = RepositoryLease(tmp_path, "svc")
    lease.acquire("forget-1", lambda run: True, is_run=False)
    with pytest.raises(LeaseBusy, match="forget-1"):
        lease.acquire("run-b", lambda run: True, wait_s=0.1)
