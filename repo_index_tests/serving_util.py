"""A real `repo-index serve` process for tests: started on a free loopback port, its URL
read from the line it prints once it listens, stopped with SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time

from repo_index_tests.pipeline import BIN


class ServeProcess:
    def __init__(self, env: dict, *args: str, timeout_s: float = 180):
        self.proc = subprocess.Popen([str(BIN / "repo-index"), "serve", "--port", "0", *args], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        said: queue.Queue[str] = queue.Queue()

        def read() -> None:
            for line in self.proc.stderr:
                self.lines.append(line)
                said.put(line)
            said.put("")

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = said.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError(f"repo-index serve did not start: {''.join(self.lines)}") from None
            found = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
            if found:
                self.url = found.group(1)
                return
            if not line:
                raise AssertionError(f"repo-index serve exited {self.proc.wait()}: {''.join(self.lines)}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        """Send `sig` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"repo-index serve did not stop on signal {sig} within {timeout_s} s") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
