"""The Dagster instance the `repo-index` commands and the search server open: the one
$DAGSTER_HOME/dagster.yaml configures, with one change where that file leaves storage at
Dagster's SQLite default: the event log keeps its connections.

Dagster's SQLite event log builds an SQLAlchemy engine, connects, and disposes of both
for every event it stores or reads (it is written for many processes sharing one folder,
and never keeps a connection). An unchanged reindex of a small repository stores 73
events: keeping the engines took its command from 3.2 s to 2.85 s. The files and tables
are Dagster's own, so the UI, the daemon and `dagster` commands read what this writes.
A dagster.yaml that names any storage (PostgreSQL for a cluster) is used as it stands.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS

from .core.settings import Settings


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log, keeping the engines (each with its pooled connection) of
    the last few shards it used: the index shard and the runs this process writes or
    follows. Bounded, so a long-lived process reading many runs does not hold a file per
    run."""

    KEPT = 4

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict = OrderedDict()  # shard -> engine, least recently used first
        self._engines_pid = os.getpid()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str):
        """The shard's engine (made, and its database created, on first use). Called with
        `_db_lock` held, as Dagster's own `_connect` builds its engine."""
        if self._engines_pid != os.getpid():  # a forked child: the connections are the parent's
            for engine in self._engines.values():
                engine.dispose(close=False)
            self._engines.clear()
            self._engines_pid = os.getpid()
        engine = self._engines.pop(shard, None)
        if engine is None:
            # SQLAlchemy's pool hands a connection to whichever thread asks (the CLI's watcher
            # thread reads while the run writes); `_db_lock` keeps them one at a time.
            engine = create_engine(self.conn_string_for_shard(shard),
                                   connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False})
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        while len(self._engines) > self.KEPT:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator:
        with self._db_lock:
            with self._engine(shard).connect() as conn, conn.begin():
                yield conn

    def _drop_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._drop_engines()  # it deletes the shard files: no connection may outlive them
        super().wipe()

    def upgrade(self) -> None:
        self._drop_engines()
        super().upgrade()

    def dispose(self) -> None:
        self._drop_engines()
        super().dispose()


def open_instance(settings: Settings) -> dg.DagsterInstance:
    """The instance of Dagster's home, as `DagsterInstance.get()` opens it (with its errors
    when $DAGSTER_HOME is wrong), its default SQLite event log pooled."""
    home = str(settings.instance_dir())
    if not (os.path.isabs(home) and os.path.isdir(home)):
        return dg.DagsterInstance.get()  # says what is wrong with DAGSTER_HOME
    ref = InstanceRef.from_dir(home)
    defaults = InstanceRef.config_defaults(home)
    if ref.storage_data == defaults["storage"] and ref.event_storage_data == defaults["event_log_storage"]:
        # dagster.yaml names no storage: Dagster's SQLite files under DAGSTER_HOME
        events_dir = yaml.safe_load(ref.event_storage_data.config_yaml)["base_dir"]
        ref = InstanceRef.from_dir(home, overrides={"event_log_storage": {
            "module": __name__, "class": PooledSqliteEventLogStorage.__name__, "config": {"base_dir": events_dir}}})
    return dg.DagsterInstance.from_ref(ref)
