"""The server's two faces over one IndexService: MCP tools for coding agents (the official
`mcp` SDK's MCPServer: stdio, or streamable HTTP at /mcp) and a JSON API beside them on the
same HTTP app (/search, /repositories, /code, /health).

A request that cannot be served gets the protocol's own error: a tool result marked
`isError` with the message for MCP; an HTTP status with `{"error": {"type", "message"}}`
for the JSON API (400 bad query, 404 unknown repository or path, 503 a service down).
Never a traceback: an unexpected failure is logged here and answered with its type and
message.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..core.index.client import ChromaUnavailable
from ..core.search.query import SearchError, ServiceUnavailable, UnknownRepository
from ..core.source.at_commit import CodeUnavailable
from .service import IndexService

log = logging.getLogger("repo_index.serve")

INSTRUCTIONS = (
    "Search the code of the repositories indexed by repo_index. Start with search_code (a natural-language "
    "description or an identifier); each hit gives repository, path, line range, the lines that matched and "
    "whether the repository's index is stale. Then read_code for the surrounding lines. list_repositories "
    "tells what can be searched.")


def _status(exc: BaseException) -> int:
    if isinstance(exc, (UnknownRepository, CodeUnavailable)):
        return 404
    if isinstance(exc, (ServiceUnavailable, ChromaUnavailable)):
        return 503
    if isinstance(exc, (SearchError, ValueError)):
        return 400
    return 500


def _message(exc: BaseException) -> str:
    if _status(exc) == 500:
        log.exception("unexpected failure", exc_info=exc)
        return f"internal error: {type(exc).__name__}: {exc}"
    return str(exc)


def build_server(service: IndexService) -> MCPServer:
    """The MCP server with its tools, and the JSON API as routes of its HTTP app."""
    mcp = MCPServer("repo-index", instructions=INSTRUCTIONS)

    def tool(fn):
        # The docstring as one paragraph: the SDK would hand an agent its indentation too.
        return mcp.tool(description=" ".join(fn.__doc__.split()), annotations={"readOnlyHint": True})(fn)

    def answer(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # what the agent can act on, as the tool's error
            raise ToolError(_message(exc)) from None

    @tool
    def search_code(
        query: Annotated[str, Field(description="What to find: a description of behaviour ('retry failed uploads "
                                                "with backoff') or an identifier ('parse_headers').")],
        repositories: Annotated[list[str] | None, Field(
            description="Repository names to search (see list_repositories); omit to search all.")] = None,
        k: Annotated[int, Field(ge=1, le=50, description="How many hits to return.")] = 8,
        language: Annotated[str | None, Field(description="Only code in this language, e.g. 'python'.")] = None,
        path_glob: Annotated[str | None, Field(description="Only files whose path matches this glob, "
                                                            "e.g. 'src/**/*.py'.")] = None,
        mode: Annotated[Literal["hybrid", "vector", "lexical"], Field(
            description="hybrid: meaning and words fused (best in general); vector: meaning only; "
                        "lexical: words only (BM25).")] = "hybrid",
    ) -> dict[str, Any]:
        """Search indexed code. Returns hits best first, each with repository, path, start_line-end_line,
        symbol, language, score, the commit it was indexed at, whether that repository's index is stale
        (and why), and a snippet of the lines that matched best. Repositories that could not be searched
        are listed under 'unavailable' with the reason. Read more around a hit with read_code."""
        return answer(service.search, query, repositories, k, language, path_glob, mode, with_text=False)

    @tool
    def list_repositories() -> dict[str, Any]:
        """The repositories that can be searched: name, source, the commit indexed, the embedding model,
        and whether the index is stale (its source has moved since, or a run failed after it)."""
        return {"repositories": answer(service.repositories)}

    @tool
    def read_code(
        repository: Annotated[str, Field(description="Repository name, as a hit or list_repositories gives it.")],
        path: Annotated[str, Field(description="File path inside the repository, as a hit gives it.")],
        start_line: Annotated[int, Field(ge=1, description="First line (1-based).")] = 1,
        end_line: Annotated[int | None, Field(ge=1, description="Last line, inclusive; omit for the end "
                                                                "(at most 1000 lines are returned).")] = None,
    ) -> dict[str, Any]:
        """Lines of an indexed file at the commit the index holds, so line numbers match the hits even if
        the source moved on since. Says when the lines are the file as it is now (a local folder without
        git history) and when the repository's index is stale."""
        return answer(service.read_code, repository, path, start_line, end_line)

    def route(path: str, fn, params):
        async def handler(request: Request) -> JSONResponse:
            try:
                args = await params(request)
                body = await anyio.to_thread.run_sync(lambda: fn(**args))
            except Exception as exc:
                return JSONResponse({"error": {"type": type(exc).__name__, "message": _message(exc)}},
                                    status_code=_status(exc))
            return JSONResponse(body)

        mcp.custom_route(path, methods=["GET", "POST"])(handler)

    route("/search", service.search, _search_params)
    route("/repositories", lambda: {"repositories": service.repositories()}, _no_params)
    route("/code", service.read_code, _code_params)
    route("/health", lambda: {"status": "ok"}, _no_params)
    return mcp


async def _arguments(request: Request) -> dict:
    """A request's arguments: the JSON body of a POST, else the query string (a name given
    more than once is a list)."""
    if request.method == "POST":
        try:
            body = await request.json()
        except ValueError:
            raise SearchError("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise SearchError("the request body must be a JSON object")
        return body
    args: dict = {}
    for key, value in request.query_params.multi_items():
        args[key] = [*args[key], value] if isinstance(args.get(key), list) else (
            [args[key], value] if key in args else value)
    return args


def _int(args: dict, key: str, default: int | None, low: int, high: int) -> int | None:
    value = args.get(key, default)
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SearchError(f"{key} must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise SearchError(f"{key} must be between {low} and {high}, not {number}")
    return number


async def _search_params(request: Request) -> dict:
    args = await _arguments(request)
    query = args.get("query", args.get("q"))
    if not isinstance(query, str):
        raise SearchError("give the query as 'query' (a string)")
    repos = args.get("repositories", args.get("repo"))
    repos = [repos] if isinstance(repos, str) else repos
    deadline_ms = _int(args, "deadline_ms", None, 1, 600_000)
    return {"query": query, "repositories": repos or None, "k": _int(args, "k", 5, 1, 200),
            "language": args.get("language") or None, "path_glob": args.get("path") or args.get("path_glob") or None,
            "mode": args.get("mode") or "hybrid", "deadline_s": deadline_ms / 1000 if deadline_ms else None,
            "with_text": str(args.get("text", "true")).lower() not in ("0", "false", "no")}


async def _code_params(request: Request) -> dict:
    args = await _arguments(request)
    repo, path = args.get("repository", args.get("repo")), args.get("path")
    if not isinstance(repo, str) or not isinstance(path, str):
        raise SearchError("give 'repository' and 'path'")
    return {"repository": repo, "path": path, "start_line": _int(args, "start_line", 1, 1, 10**9),
            "end_line": _int(args, "end_line", None, 1, 10**9)}


async def _no_params(request: Request) -> dict:
    return {}
