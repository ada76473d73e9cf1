"""The index in use: `repo-index serve` answering its JSON API and MCP (the SDK's own client,
over stdio and streamable HTTP), every hit naming its source and freshness; and the CLI
through the server. One project for the module, indexed by real runs:

- alpha: a git repository indexed at its HEAD (in step);
- beta: indexed, then its source moved on (lines shifted) and a run of it failed (stale);
- gamma: indexed, then its collection deleted (missing);
- delta: registered, never indexed.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from types import SimpleNamespace

import anyio
import httpx
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from repo_index.core.index.client import ChromaSettings, open_client, write_lock
from repo_index.core.index.lexical import lexical_path
from repo_index.core.settings import Settings
from repo_index_tests.fakes.openai_server import Fault, FakeOpenAIServer
from repo_index_tests.gitutil import commit_files, git, make_repo
from repo_index_tests.pipeline import BIN, materialize, project_env, register, run
from repo_index_tests.serving_util import ServeProcess

pytestmark = pytest.mark.slow

RETRY = '''import time


def retry_with_backoff(upload, attempts=5):
    """Retry a failed upload, waiting twice as long after each failure."""
    delay = 0.5
    for attempt in range(attempts):
        try:
            return upload()
        except ConnectionError:
            time.sleep(delay)
            delay *= 2
    raise RuntimeError("upload failed after every attempt")
'''
CACHE = '''class LruCache:
    """A bounded cache of recent answers."""

    def __init__(self, limit):
        self.limit = limit
        self.items = {}

    def evict_least_recently_used(self):
        """Drop the entry read longest ago once the cache is over its limit."""
        while len(self.items) > self.limit:
            oldest = next(iter(self.items))
            del self.items[oldest]
'''
HIT_FIELDS = {"repository", "path", "start_line", "end_line", "symbol", "language", "score", "indexed_commit",
              "stale", "stale_reason", "snippet"}


def file_at(repo_dir, commit: str, path: str) -> list[str]:
    return git(repo_dir, "show", f"{commit}:{path}").splitlines()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serving")
    with FakeOpenAIServer() as api:
        env = project_env(tmp, api.base_url)
        sources = {"alpha": make_repo(tmp / "alpha", {"net/retry.py": RETRY}),
                   "beta": make_repo(tmp / "beta", {"store/cache.py": CACHE}),
                   "gamma": make_repo(tmp / "gamma", {"tool.py": "def gamma_tool():\n    return 3\n"}),
                   "delta": make_repo(tmp / "delta", {"d.py": "def delta_only():\n    return 4\n"})}
        for name, src in sources.items():
            register(env, name, src)
        for name in ("alpha", "beta", "gamma"):
            materialize(env, name)
        commits = {name: git(sources[name], "rev-parse", "HEAD") for name in ("alpha", "beta")}
        # beta moves on: six lines above its class, so every line number shifts...
        commit_files(sources["beta"], {"store/cache.py": "import os\n" * 6 + CACHE}, "imports")
        # ...and its next run fails (the embedding server refuses the key).
        api.always(Fault.status(401, message="Incorrect API key provided"))
        assert materialize(env, "beta", check=False).returncode != 0
        api.clear_faults()
        chroma = ChromaSettings.from_settings(Settings(REPO_INDEX_DATA_DIR=env["REPO_INDEX_DATA_DIR"]))
        with write_lock(chroma):
            open_client(chroma).delete_collection(chroma.collection_name("gamma"))
        server = ServeProcess(env)
        try:
            yield SimpleNamespace(env=env, url=server.url, sources=sources, commits=commits, api=api, chroma=chroma,
                                  server=server)
        finally:
            server.kill()


def get(project, route: str, **params) -> httpx.Response:
    return httpx.get(project.url + route, params=params, timeout=60)


def assert_names_its_source(hit: dict, project) -> None:
    """Every field a hit must carry, each true to the repository: the commit its collection
    holds, the snippet being those lines of the file at that commit."""
    assert HIT_FIELDS <= set(hit), hit
    repo = hit["repository"]
    assert hit["indexed_commit"] == project.commits[repo]
    assert hit["language"] == "python" and hit["symbol"] and isinstance(hit["score"], float)
    snippet = hit["snippet"]
    assert hit["start_line"] <= snippet["start_line"] <= snippet["end_line"] <= hit["end_line"]
    lines = file_at(project.sources[repo], hit["indexed_commit"], hit["path"])
    assert snippet["text"].splitlines() == lines[snippet["start_line"] - 1:snippet["end_line"]]


def test_http_search_names_each_hits_source_and_freshness(project):
    answer = get(project, "/search", query="retry a failed upload with backoff", k=4).json()
    assert answer["searched"] == ["alpha", "beta"]  # gamma's collection is gone, delta never indexed
    hits = answer["hits"]
    assert hits[0]["repository"] == "alpha" and hits[0]["path"] == "net/retry.py"
    assert hits[0]["start_line"] <= 4 <= hits[0]["end_line"]  # the def line
    for hit in hits:
        assert_names_its_source(hit, project)
    assert hits[0]["stale"] is False and hits[0]["stale_reason"] == ""

    [beta] = get(project, "/search", query="evict the least recently used entry", repo="beta", k=1).json()["hits"]
    assert_names_its_source(beta, project)
    assert beta["stale"] is True
    assert "source has moved" in beta["stale_reason"] and "failed" in beta["stale_reason"]


def test_the_collection_keeps_no_text_and_a_hit_reads_it_from_the_lexical_index(project):
    coll = open_client(project.chroma).get_collection(project.chroma.collection_name("alpha"))
    assert set(coll.get(include=["documents"])["documents"]) == {None}
    [hit] = get(project, "/search", query="retry a failed upload with backoff", repo="alpha", k=1).json()["hits"]
    lines = file_at(project.sources["alpha"], hit["indexed_commit"], hit["path"])
    assert hit["text"].splitlines() == lines[hit["start_line"] - 1:hit["end_line"]]


def test_http_errors_are_json_with_the_status_that_fits(project):
    missing = get(project, "/search", query="gamma tool", repo="gamma")
    assert missing.status_code == 404
    assert "has no index yet" in missing.json()["error"]["message"]
    unknown = get(project, "/search", query="anything", repo="nosuch")
    assert unknown.status_code == 404
    assert "'nosuch' is not registered" in unknown.json()["error"]["message"]
    for params, words in [({"query": " "}, "empty query"), ({"query": "x", "k": "many"}, "k must be a whole number"),
                          ({"query": "x", "mode": "psychic"}, "unknown search mode")]:
        bad = get(project, "/search", **params)
        assert bad.status_code == 400 and words in bad.json()["error"]["message"], bad.text
    posted = httpx.post(project.url + "/search", content=b"{not json", timeout=30)
    assert posted.status_code == 400 and "not JSON" in posted.json()["error"]["message"]


def test_http_repositories_lists_freshness_and_what_is_missing(project):
    rows = {r["name"]: r for r in get(project, "/repositories").json()["repositories"]}
    assert set(rows) == {"alpha", "beta", "gamma", "delta"}
    assert rows["alpha"]["indexed"] and rows["alpha"]["stale"] is False
    assert rows["alpha"]["indexed_commit"] == project.commits["alpha"]
    assert rows["beta"]["stale"] is True and "source has moved" in rows["beta"]["stale_reason"]
    for name in ("gamma", "delta"):
        assert rows[name]["indexed"] is False and "not indexed yet" in rows[name]["stale_reason"]


def test_http_code_reads_the_indexed_commit_not_the_moved_source(project):
    body = get(project, "/code", repository="beta", path="store/cache.py", start_line=8, end_line=12).json()
    old = file_at(project.sources["beta"], project.commits["beta"], "store/cache.py")
    assert body["text"].splitlines() == old[7:12]  # what the hits' line numbers point at
    assert body["at_indexed_commit"] is True and body["commit"] == project.commits["beta"]
    assert body["stale"] is True and body["total_lines"] == len(old)
    assert (project.sources["beta"] / "store/cache.py").read_text().splitlines()[7:12] != old[7:12]
    for params, status in [({"repository": "beta", "path": "../alpha/net/retry.py"}, 404),
                           ({"repository": "beta", "path": "store/other.py"}, 404),
                           ({"repository": "beta", "path": "store/cache.py", "start_line": 500}, 404),
                           ({"repository": "gamma", "path": "tool.py"}, 404)]:
        answer = get(project, "/code", **params)
        assert answer.status_code == status and answer.json()["error"]["message"], (params, answer.text)


def test_a_slow_repository_is_named_and_the_others_answered_by_the_deadline(project):
    """beta's lexical index is locked by another process: its search cannot finish, and the
    answer comes at the deadline with alpha's hits and beta named."""
    lexical = lexical_path(project.chroma.lexical_dir(), project.chroma.collection_name("beta"))
    blocker = sqlite3.connect(lexical, isolation_level=None)
    blocker.execute("PRAGMA locking_mode=EXCLUSIVE")
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        answer = get(project, "/search", query="retry a failed upload", deadline_ms=3000).json()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert answer["searched"] == ["alpha", "beta"]
    assert {h["repository"] for h in answer["hits"]} == {"alpha"}
    assert "no answer within the deadline" in answer["unavailable"]["beta"]
    # Once the lock is gone beta answers again.
    assert get(project, "/search", query="evict least recently used", repo="beta").json()["hits"]


def test_a_search_that_cannot_be_served_says_why_in_each_protocol(project):
    """The embedding model's provider not configured (no API key), then the Chroma server
    down: 503 with the reason over HTTP, an error result over MCP; never a traceback."""
    no_key = {k: v for k, v in project.env.items() if k != "OPENAI_API_KEY"}
    chroma_down = {**project.env, "REPO_INDEX_CHROMA_MODE": "server", "REPO_INDEX_CHROMA_PORT": "9"}
    for env, words in [(no_key, "set OPENAI_API_KEY"), (chroma_down, "127.0.0.1:9")]:
        server = ServeProcess(env)
        try:
            answer = httpx.get(server.url + "/search", params={"query": "retry"}, timeout=60)
            assert answer.status_code == 503 and words in answer.json()["error"]["message"], answer.text

            async def call():
                async with Client(server.url + "/mcp") as client:
                    return await client.call_tool("search_code", {"query": "retry"})
            result = anyio.run(call)
            assert result.is_error and words in result.content[0].text
        finally:
            assert server.stop() == 0
        assert "Traceback" not in "".join(server.lines)


def _mcp_session(target):
    """list_tools, a search, a read and an error through the SDK's client."""
    async def session():
        async with Client(target) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            found = await client.call_tool("search_code", {"query": "retry a failed upload with backoff", "k": 3})
            read = await client.call_tool("read_code", {"repository": "alpha", "path": "net/retry.py",
                                                        "start_line": 4, "end_line": 5})
            unknown = await client.call_tool("search_code", {"query": "x", "repositories": ["nosuch"]})
            listed = await client.call_tool("list_repositories", {})
            return tools, found, read, unknown, listed
    return anyio.run(session)


def assert_mcp_session(project, tools, found, read, unknown, listed) -> None:
    assert set(tools) == {"search_code", "list_repositories", "read_code"}
    schema = tools["search_code"].input_schema
    assert schema["required"] == ["query"] and {"repositories", "k", "language", "path_glob", "mode"} <= set(
        schema["properties"])
    assert all(len(t.description) > 60 and "\n" not in t.description and "  " not in t.description
               for t in tools.values())
    assert not found.is_error
    hits = found.structured_content["hits"]
    assert hits[0]["repository"] == "alpha" and "text" not in hits[0]  # the snippet, not the whole chunk
    for hit in hits:
        assert_names_its_source(hit, project)
    assert json.loads(found.content[0].text)["hits"] == hits  # the same for a client reading text
    assert read.structured_content["text"].splitlines() == RETRY.splitlines()[3:5]
    assert unknown.is_error and "'nosuch' is not registered" in unknown.content[0].text
    names = {r["name"]: r for r in listed.structured_content["repositories"]}
    assert names["beta"]["stale"] is True and names["delta"]["indexed"] is False


def test_an_mcp_client_over_streamable_http(project):
    assert_mcp_session(project, *_mcp_session(project.url + "/mcp"))


def test_an_mcp_client_over_stdio(project):
    params = StdioServerParameters(command=str(BIN / "repo-index"), args=["serve", "--stdio"], env=project.env)
    assert_mcp_session(project, *_mcp_session(params))


def test_the_cli_asks_the_server_and_names_repositories_and_staleness(project):
    env = {**project.env, "REPO_INDEX_SERVER_URL": project.url}
    before = project.api.requests_total
    out = run([BIN / "repo-index", "search", "least recently used entry evicted", "-k", "3"], env)
    assert project.api.requests_total == before + 1  # the server embedded the query; the CLI loaded nothing
    first = out.stdout.splitlines()[0]
    assert first.startswith("beta/store/cache.py:") and "(stale)" in first  # several searched: repo named
    assert "warning: the index of beta is stale: source has moved" in out.stderr
    one = run([BIN / "repo-index", "search", "retry upload", "--repo", "alpha", "-k", "1"], env)
    assert one.stdout.startswith("net/retry.py:")  # one repository searched: no prefix
    unknown = run([BIN / "repo-index", "search", "x", "--repo", "nosuch"], env, check=False)
    assert unknown.returncode == 1 and "'nosuch' is not registered" in unknown.stderr
    down = run([BIN / "repo-index", "search", "x"], {**env, "REPO_INDEX_SERVER_URL": "http://127.0.0.1:9"},
               check=False)
    assert down.returncode == 1 and "cannot be reached" in down.stderr and "Traceback" not in down.stderr


def test_the_cli_without_a_server_says_an_unknown_repository_is_not_registered(project):
    unknown = run([BIN / "repo-index", "search", "x", "--repo", "nosuch"], project.env, check=False)
    assert unknown.returncode == 1
    assert "'nosuch' is not registered" in unknown.stderr and "repo-index index" not in unknown.stderr
    never = run([BIN / "repo-index", "search", "x", "--repo", "delta"], project.env, check=False)
    assert never.returncode == 1 and "has no index yet: run `repo-index index delta`" in never.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_says_where_it_listens_and_stops_cleanly(project, sig):
    server = ServeProcess(project.env)
    try:
        assert httpx.get(server.url + "/health", timeout=30).json() == {"status": "ok"}
        assert server.stop(sig) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/health", timeout=5)
    finally:
        server.kill()
    assert "Traceback" not in "".join(server.lines)


def test_serve_on_a_port_in_use_says_so(project):
    port = project.url.rsplit(":", 1)[1]
    done = subprocess.run([str(BIN / "repo-index"), "serve", "--port", port], env=project.env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
