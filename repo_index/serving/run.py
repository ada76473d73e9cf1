"""Starting the server: the socket bound first (so `--port 0` works and the line saying
where it listens is true), the models loaded before the first request, and uvicorn's own
handling of Ctrl-C and SIGTERM (it stops accepting, finishes what is in flight, exits 0)."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Callable

from .app import build_server
from .service import IndexService


def _warm(service: IndexService, echo: Callable[[str], None]) -> None:
    try:
        models = service.searcher.warm()
    except Exception as exc:  # nothing indexed yet, or Chroma down: serve anyway, say so
        echo(f"no model loaded ahead: {exc}")
        return
    echo(f"models loaded: {', '.join(models)}" if models else "no repository is indexed yet")


def _quiet_sdk() -> None:
    # The SDK logs each session start and stop at INFO: not what a user of `serve` reads.
    logging.getLogger("mcp").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # each Dagster instance opened says its migrations


def serve_http(service: IndexService, host: str, port: int, echo: Callable[[str], None]) -> None:
    import uvicorn

    _quiet_sdk()

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise SystemExit(f"error: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    _warm(service, echo)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}"
    app = build_server(service).streamable_http_app(host=host)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10, lifespan="on")
    # uvicorn shuts down gracefully on SIGINT and SIGTERM, then raises the signal again for
    # the handler it found: ours, so a stop asked for ends with status 0, not "killed". Set
    # before the line below: a SIGTERM as soon as a caller reads it stops us the same way.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        echo(f"repo-index serving on {url}  (JSON API: {url}/search, /repositories, /code; MCP streamable HTTP: "
             f"{url}/mcp); Ctrl-C stops it")
        uvicorn.Server(config).run(sockets=[sock])
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    echo("repo-index serve stopped")


class _Stop(Exception):
    pass


def _stopped(signum, frame) -> None:
    raise _Stop()


def serve_stdio(service: IndexService) -> None:
    """MCP over stdin/stdout, as a coding assistant starts it; anything said goes to stderr."""
    _quiet_sdk()
    _warm(service, lambda line: print(line, file=sys.stderr, flush=True))
    build_server(service).run("stdio")
