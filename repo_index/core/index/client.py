"""Where the Chroma collections live and how to reach them: embedded (a folder, one
process at a time) or a server.

A Chroma server that cannot be reached (down, restarting, wrong port) raises
`ChromaUnavailable`, naming the server and the fix, rather than a bare connection error;
a re-run once it is back converges, since every sync is a diff. A collection Chroma cannot
read (`unreadable`) is rebuilt by the next sync.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..disk_full import disk_full_reason
from ..settings import Settings

# Records a page holds when their metadata comes too: Chroma reads those by lists of ids
# (about 30 k bind variables at most).
READ_BATCH = 5000
# Ids alone: Chroma pages by offset, every page walking past the records before it, so
# fewer pages cost less (116 k ids of an embedded collection: 3.0 s in pages of 5,000,
# 0.4 s in pages of 100,000; the checks of every run read them all).
IDS_BATCH = 100_000


class ChromaUnavailable(RuntimeError):
    """The Chroma server cannot be reached; the message names it and the fix."""


@dataclass(frozen=True)
class ChromaSettings:
    mode: str = "embedded"  # "embedded" (PersistentClient) or "server" (HttpClient)
    path: str = ""  # the embedded folder
    host: str = "127.0.0.1"
    port: int = 8000
    ssl: bool = False
    token: str | None = field(default=None, repr=False)
    collection_prefix: str = "repo_index-"
    # Where syncs leave each collection's ids and line spans (see spans.py); default: next
    # to the embedded folder.
    state_dir: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ChromaSettings:
        return cls(mode=settings.chroma_mode, path=str(settings.chroma_path()), host=settings.chroma_host,
                   port=settings.chroma_port, ssl=settings.chroma_ssl, token=settings.chroma_auth_token(),
                   collection_prefix=settings.collection_prefix,
                   state_dir=str(settings.collection_spans_dir()))

    def collection_name(self, repo: str) -> str:
        return f"{self.collection_prefix}{repo}"

    def spans_dir(self) -> Path:
        if self.state_dir:
            return Path(self.state_dir)
        if self.path:
            return Path(self.path).parent / "collection_spans"
        raise ValueError("ChromaSettings without state_dir or path: no folder of ours for the spans files")

    def lexical_dir(self) -> Path | None:
        """Where each repository's lexical index lives (index/lexical.py): beside the spans;
        None for a server named without a folder of ours (searched by vectors only)."""
        return self.spans_dir().parent / "lexical" if self.state_dir or self.path else None


def open_client(settings: ChromaSettings):
    import chromadb
    from chromadb.config import Settings as ClientSettings

    if settings.mode == "embedded":
        return _embedded_client(settings.path)
    client_settings = ClientSettings(anonymized_telemetry=False)
    if settings.mode == "server":
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else None
        try:
            return chromadb.HttpClient(host=settings.host, port=settings.port, ssl=settings.ssl,
                                       headers=headers, settings=client_settings)
        except Exception as exc:
            if _is_connection_error(exc):
                address = f"{'https' if settings.ssl else 'http'}://{settings.host}:{settings.port}"
                raise _unreachable(address, exc) from exc
            raise
    raise ValueError(f"unknown Chroma mode {settings.mode!r}: use 'embedded' or 'server'")


# Embedded Chroma is not safe across processes, and a reading process writes too: opening
# a collection another process is writing makes the reader bring the HNSW files up to date
# from the log, and two processes doing that at once destroy them (a search beside a sync
# wrote a 52 GB link_lists.bin and left "Error finding id" behind). So every process that
# opens the embedded folder holds this lock: searches and status share it, a sync or a
# remove holds it alone. SQLite-backed (filelock.ReadWriteLock): a waiting writer stops new
# readers, so a stream of searches cannot starve the sync, and a killed holder frees it.
LOCK_FILE = ".repo_index.rwlock"
WAIT_NOTICE_S = 1.0


GENERATION_FILE = ".repo_index.generation"
_embedded: dict[str, tuple[tuple, object]] = {}  # folder -> (its stamp when opened, the client)


def _embedded_client(path: str):
    """The client of an embedded folder, kept while the folder is unchanged (building one
    reads the environment, and loads the collections again).

    Chroma keeps one in-memory system per folder for the life of the process. If another
    process has written the folder since this one loaded it, that copy is stale, and
    catching up would make this reader write the index files: it is dropped, so the folder
    is loaded afresh."""
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient
    from chromadb.config import Settings as ClientSettings

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    # Not the SQLite file's mtime: a query writes it too. Every writer of ours marks the
    # folder when it lets go of the write lock; the file's existence tells a folder that was
    # deleted or replaced.
    stamp = (_generation(folder), (folder / "chroma.sqlite3").exists())
    held = _embedded.get(path)
    if held is not None and held[0] == stamp:
        return held[1]
    if held is not None:
        system = SharedSystemClient._identifier_to_system.pop(str(folder), None)
        if system is not None:
            system.stop()
    client = chromadb.PersistentClient(path=path, settings=ClientSettings(anonymized_telemetry=False))
    _embedded[path] = (stamp, client)
    return client


def _generation(folder: Path) -> str:
    try:
        return (folder / GENERATION_FILE).read_text()
    except OSError:
        return ""


def _mark_written(folder: Path) -> None:
    """Tell every process holding this folder open that it changed (see _embedded_client)."""
    (folder / GENERATION_FILE).write_text(f"{time.time_ns()}-{os.getpid()}")


def write_lock(settings: ChromaSettings, notice: Callable[[str], None] | None = None):
    """Held while writing the collections (sync, remove, rebuild); excludes every reader."""
    return _chroma_lock(settings, write=True, notice=notice)


def read_lock(settings: ChromaSettings, notice: Callable[[str], None] | None = None):
    """Held while reading the collections (search, status); shared with other readers."""
    return _chroma_lock(settings, write=False, notice=notice)


@contextlib.contextmanager
def _chroma_lock(settings: ChromaSettings, write: bool, notice: Callable[[str], None] | None):
    if settings.mode != "embedded":  # a server serialises its own writes
        yield
        return
    from filelock import ReadWriteLock, Timeout

    Path(settings.path).mkdir(parents=True, exist_ok=True)
    lock = ReadWriteLock(str(Path(settings.path) / LOCK_FILE), is_singleton=False)
    acquire = lock.acquire_write if write else lock.acquire_read
    try:
        try:
            acquire(timeout=WAIT_NOTICE_S)
        except Timeout:
            if notice:
                notice(f"waiting for {'the readers and ' if write else ''}the writer of the embedded Chroma at "
                       f"{settings.path} to finish (an index run syncing, or a remove)")
            acquire(timeout=-1)
        try:
            yield
        finally:
            if write:
                _mark_written(Path(settings.path))
            lock.release()
    finally:
        lock.close()


def _is_connection_error(exc: BaseException) -> bool:
    import httpx

    # HttpClient's constructor turns a refused connection into this ValueError.
    return isinstance(exc, (httpx.TransportError, ConnectionError)) or (
        isinstance(exc, ValueError) and "Could not connect to a Chroma server" in str(exc))


def _server_address(client_or_collection) -> str:
    api = getattr(client_or_collection, "_client", client_or_collection)  # a Collection's API client
    try:
        s = api.get_settings()
        return f"{'https' if s.chroma_server_ssl_enabled else 'http'}://{s.chroma_server_host}:{s.chroma_server_http_port}"
    except Exception:
        return "the configured address"


def _unreachable(address: str, exc: BaseException) -> ChromaUnavailable:
    return ChromaUnavailable(
        f"cannot reach the Chroma server at {address} ({type(exc).__name__}: {exc}). Start it "
        "(`chroma run --path DIR --host HOST --port PORT`) or point REPO_INDEX_CHROMA_HOST and "
        "REPO_INDEX_CHROMA_PORT at a running one, then re-run: the collection converges.")


def names_the_server(fn):
    """Re-raise a connection failure of `fn(client_or_collection, ...)` as ChromaUnavailable."""
    @functools.wraps(fn)
    def wrapper(target, *args, **kwargs):
        try:
            return fn(target, *args, **kwargs)
        except ChromaUnavailable:
            raise
        except Exception as exc:
            if _is_connection_error(exc):
                raise _unreachable(_server_address(target), exc) from exc
            raise
    return wrapper


@names_the_server
def get_collection(client, name: str):
    from chromadb.errors import NotFoundError

    try:
        return client.get_collection(name, embedding_function=None)
    except (NotFoundError, ValueError):
        return None


def unreadable(collection) -> str | None:
    """Why Chroma cannot read `collection`, or None. An embedded collection whose index
    files a full disk left half written fails every read (`Error deserializing pickle
    file: ... EOF`) until it is rebuilt; a server that cannot be reached is not this."""
    try:
        collection.count()
    except Exception as exc:
        if _is_connection_error(exc):
            raise _unreachable(_server_address(collection), exc) from exc
        return " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
    return None


def unreadable_note(repo: str, reason: str, settings: ChromaSettings) -> str:
    """One line for status and search: the collection of `repo` cannot be read, why, and the fix."""
    full = disk_full_reason(RuntimeError(reason), [settings.path] if settings.mode == "embedded" else [])
    first = f"disk full ({full}): free space, then run" if full else "run"
    return (f"its collection cannot be read ({reason}); {first} `repo-index index {repo}` to rebuild it from "
            "the embedding cache")


def pages(collection, include: list[str]) -> Iterator[dict]:
    """The whole collection, READ_BATCH records at a time (IDS_BATCH when only ids are asked)."""
    size = READ_BATCH if include else IDS_BATCH
    offset = 0
    while True:
        page = collection.get(include=include, limit=size, offset=offset)
        yield page
        if len(page["ids"]) < size:
            return
        offset += size
