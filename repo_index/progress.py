"""Run the indexing job for repositories from the CLI, streaming the run's events.

Each run is created as the UI creates it and then queued for the daemon or executed in
this process (launch.py); a watcher thread follows the run's event log and prints each
stage's start, log lines and result, then a one-screen summary per repository.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType

from .core.run_lease import process_gone
from .launch import HEARTBEAT_FRESH_S, HOST_TAG, PID_TAG, Launch, launch_index_run, queue_daemon_alive
from .core.source.registry import RepoSpec
from .run_errors import full_trace, headline
from .run_size import execution_for

INVOCATION_TAG = "repo_index/invocation"
STAGES = ("repo_files", "code_chunks", "chunk_embeddings", "vector_collection")


@dataclass
class RunSummary:
    repo: str
    success: bool = False
    run_id: str = ""
    seconds: float = 0.0
    metadata: dict[str, dict] = field(default_factory=dict)  # asset -> metadata values
    checks: dict[str, bool] = field(default_factory=dict)  # check name -> passed
    check_reasons: dict[str, str] = field(default_factory=dict)  # failed check -> why
    error: str = ""


# How often the command looks whether a queued run has ended: a cheap query, and a small
# reindex's run ends within seconds (a half-second poll added 0.25 s to each on average).
QUEUED_POLL_S = 0.1


def _value(meta_value):
    return getattr(meta_value, "value", meta_value)


class RunWatcher(threading.Thread):
    """Follows the event log of the run tagged `invocation` and prints what happens: a
    failure as the error our code raised, in one line, with its whole trace if `verbose`."""

    def __init__(self, instance: dg.DagsterInstance, invocation: str, repo: str, echo: Callable[[str], None],
                 verbose: bool = False):
        super().__init__(daemon=True)
        self.instance, self.invocation, self.repo, self.echo = instance, invocation, repo, echo
        self.verbose = verbose
        self.stop_event = threading.Event()
        self.run_id: str | None = None
        self.cursor: str | None = None
        self.step_started: dict[str, float] = {}

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.poll()
            self.stop_event.wait(0.5)
        self.poll()  # whatever arrived after the last tick

    def poll(self) -> None:
        if self.run_id is None:
            runs = self.instance.get_runs(dg.RunsFilter(tags={INVOCATION_TAG: self.invocation}), limit=1)
            if not runs:
                return
            self.run_id = runs[0].run_id
            self.echo(f"[{self.repo}] run {self.run_id[:8]} started")
        while True:
            conn = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, limit=200)
            for record in conn.records:
                self.show(record.event_log_entry)
            self.cursor = conn.cursor
            if not conn.has_more:
                return

    def show(self, entry) -> None:
        step = entry.step_key or ""
        event = entry.dagster_event
        prefix = f"[{self.repo}] {step:17}"
        if event is None:
            if step and entry.user_message and entry.level >= logging.INFO:
                self.echo(f"{prefix} {entry.user_message}")
            return
        kind = event.event_type
        if kind == DagsterEventType.STEP_START:
            self.step_started[step] = entry.timestamp
            self.echo(f"{prefix} started")
        elif kind == DagsterEventType.STEP_SUCCESS:
            took = entry.timestamp - self.step_started.get(step, entry.timestamp)
            self.echo(f"{prefix} done in {took:.1f}s")
        elif kind == DagsterEventType.STEP_FAILURE:
            self.echo(f"{prefix} FAILED: {headline(event.step_failure_data.error)}")
            self._trace(event.step_failure_data.error)
        elif kind == DagsterEventType.STEP_UP_FOR_RETRY:
            self.echo(f"{prefix} will retry")
        elif kind != DagsterEventType.RUN_FAILURE and entry.level >= logging.ERROR:
            # What Dagster's console logger showed before it was quieted (an executor whose
            # step process died, say); the run's failure itself is in the summary.
            error = getattr(event.event_specific_data, "error", None)
            self.echo(f"{prefix} {entry.message.strip()}" + (f": {headline(error)}" if error else ""))
            self._trace(error)

    def _trace(self, error) -> None:
        if self.verbose and error is not None:
            self.echo("\n".join("    " + line for line in full_trace(error).splitlines()))


SUMMARY_EVENTS = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_CHECK_EVALUATION,
                  DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}


def _summarize(instance: dg.DagsterInstance, run_id: str, summary: RunSummary) -> None:
    """Fill `summary` from the run's event log (the same whether it ran here or in the daemon)."""
    run = instance.get_run_by_id(run_id)
    summary.run_id, summary.success = run_id, run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    for entry in instance.all_logs(run_id, of_type=SUMMARY_EVENTS):
        event = entry.dagster_event
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization
            summary.metadata[mat.asset_key.to_user_string()] = {k: _value(v) for k, v in mat.metadata.items()}
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            summary.checks[evaluation.check_name] = evaluation.passed
            if not evaluation.passed:
                summary.check_reasons[evaluation.check_name] = (
                    evaluation.description or str(_value(evaluation.metadata.get("reason", ""))) or "no reason given")
        elif event.event_type == DagsterEventType.STEP_FAILURE and not summary.error:
            summary.error = f"{event.step_key}: {headline(event.step_failure_data.error, 'failed')}"
        elif event.event_type == DagsterEventType.RUN_FAILURE and not summary.error:
            error = getattr(event.event_specific_data, "error", None)
            summary.error = headline(error, event.message or "the run failed")


def format_summary(s: RunSummary) -> str:
    if not s.success:
        return f"{s.repo}: FAILED after {s.seconds:.1f}s — {s.error or 'see the run in the UI'} (run {s.run_id})"
    files = s.metadata.get("repo_files", {})
    chunks = s.metadata.get("code_chunks", {})
    emb = s.metadata.get("chunk_embeddings", {})
    coll = s.metadata.get("vector_collection", {})
    commit = files.get("commit") or f"tree {files.get('tree_fingerprint', '?')}"
    lines = [
        f"{s.repo} @ {commit[:12]}  ({s.seconds:.1f}s, run {s.run_id[:8]})",
        f"  files       {files.get('files', 0):>8,}  ({files.get('skipped', 0):,} skipped: {files.get('skipped_by_reason', {})})",
        f"  chunks      {chunks.get('chunks', 0):>8,}  ({chunks.get('tokens', 0):,} tokens, max {chunks.get('max_tokens', '?')}/chunk)",
        f"  embeddings  {emb.get('embedded', 0):>8,} new, {emb.get('reused', 0):,} reused  "
        f"({emb.get('requests', 0)} requests, {emb.get('retries', 0)} retries, {emb.get('model', '?')}, "
        f"~${emb.get('estimated_usd', 0):.4f})",
    ]
    if emb.get("refused"):  # left out of the collection: say which, as the metadata does
        shown = "; ".join(f"{e['path']}:{e['start_line']}-{e['end_line']} ({e['reason'][:80]})"
                          for e in (emb.get("refused_examples") or [])[:3])
        lines.append(f"    {emb['refused']:,} chunks refused by the embedding server, left out: {shown}")
    if coll:
        lines.append(f"  collection  {coll.get('records', 0):>8,}  records in {coll.get('collection')} "
                     f"(+{coll.get('added', 0)} -{coll.get('deleted', 0)} moved {coll.get('moved', 0)})")
    if s.checks:
        lines.append("  checks      " + ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in s.checks.items()))
        lines += [f"    {name} FAILED: {reason}" for name, reason in s.check_reasons.items()]
    return "\n".join(lines)


def reap_dead_runs(instance: dg.DagsterInstance, echo: Callable[[str], None]) -> list[str]:
    """Mark failed the CLI runs on this host whose process is gone (killed mid-run), and
    free the pool slots they held: otherwise a killed `repo-index index` keeps the "chroma"
    pool's only slot for good, since no daemon monitors a run the CLI executes itself."""
    reaped = []
    runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
                                           tags={HOST_TAG: socket.gethostname()}))
    for run in runs:
        pid = run.tags.get(PID_TAG, "")
        if not pid.isdigit() or not process_gone(int(pid)):
            continue  # still running (or not ours to judge)
        instance.report_run_failed(run, f"the repo-index process running it (pid {run.tags.get(PID_TAG)}) is gone")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        echo(f"run {run.run_id[:8]} of {run.tags.get('dagster/partition', '?')} was killed: marked failed, "
             "its pool slots freed")
        reaped.append(run.run_id)
    return reaped


def run_index(instance: dg.DagsterInstance, repos: list[str], run_config: dict | None,
              echo: Callable[[str], None] = print, stop_at: str | None = None,
              allow_failed_checks: bool = False, in_process: bool = False, verbose: bool = False,
              specs: dict[str, RepoSpec] | None = None, registry_file: Path | None = None) -> list[str]:
    """One run of the indexing job per repository; returns the names that failed (a run,
    or unless `allow_failed_checks`, one of its asset checks).

    With a daemon running (and not `in_process`) every run is queued at once and the daemon
    runs them under the queue's limits; otherwise they run here, in turn. With `specs`, a
    repository whose run has little to do runs its steps in one process (run_size.py)."""
    from .partitions import initialize_pools

    initialize_pools(instance)
    reap_dead_runs(instance, echo)
    queued = not in_process and queue_daemon_alive(instance)
    if queued:
        echo("a daemon is running: runs are queued as from the UI and run in its code server, with its "
             "environment (Ctrl-C stops watching, not the runs; --in-process runs them here)")
    else:
        echo("running in this process" + ("" if in_process else " (no daemon is running the queue)"))
    # The watcher prints the run's events, a failure in one line (its trace with `verbose`);
    # Dagster's console logger would repeat them, each failure as ~100 lines of stacks. A
    # queued run's console is the daemon's: its errors stay there.
    console_level = "ERROR" if queued else "CRITICAL"
    run_config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": console_level}}}}
    assets = None if stop_at is None else list(STAGES[:STAGES.index(stop_at) + 1])
    started: list[tuple[str, RunWatcher, float, Launch]] = []
    summaries = []
    for repo in repos:
        invocation = uuid.uuid4().hex
        watcher = RunWatcher(instance, invocation, repo, echo, verbose)
        watcher.start()
        began = time.perf_counter()
        config, little = run_config, None
        if specs and repo in specs and registry_file is not None:
            config, little = execution_for(instance, specs[repo], registry_file, run_config)
        if little:
            echo(f"[{repo}] little to do ({little}): its steps run in one process")
        try:
            launch = launch_index_run(instance, config, {"dagster/partition": repo, INVOCATION_TAG: invocation},
                                      assets, in_process=not queued)
        except BaseException:
            watcher.stop_event.set()
            raise
        if queued:
            echo(f"[{repo}] run {launch.run_id[:8]} queued")
            started.append((repo, watcher, began, launch))
        else:
            summaries.append(_finish(instance, repo, watcher, began, launch, echo))
    try:
        for repo, watcher, began, launch in started:
            said = False
            while not (run := instance.get_run_by_id(launch.run_id)).is_finished:
                # A daemon stopped a moment ago still looks alive by its heartbeat (launch.py):
                # say so when nobody takes the run, rather than wait without a word.
                if not said and run.status == dg.DagsterRunStatus.QUEUED and not queue_daemon_alive(instance):
                    echo(f"[{repo}] no daemon is taking runs off the queue any more (no heartbeat for "
                         f"{HEARTBEAT_FRESH_S} s): start one (`make dev`), or terminate run {launch.run_id[:8]} "
                         "in the UI and run again with --in-process")
                    said = True
                time.sleep(QUEUED_POLL_S)
            summaries.append(_finish(instance, repo, watcher, began, launch, echo))
    except KeyboardInterrupt:
        echo("stopped watching; the queued runs go on in the daemon: "
             + ", ".join(launch.run_id[:8] for *_, launch in started))
        raise
    return [s.repo for s in summaries if not s.success or (s.check_reasons and not allow_failed_checks)]


def _finish(instance: dg.DagsterInstance, repo: str, watcher: RunWatcher, began: float, launch: Launch,
            echo: Callable[[str], None]) -> RunSummary:
    """Stop following a run that has ended and print its summary."""
    watcher.stop_event.set()
    watcher.join(timeout=10)
    summary = RunSummary(repo)
    _summarize(instance, launch.run_id, summary)
    summary.seconds = time.perf_counter() - began
    echo(format_summary(summary))
    return summary
