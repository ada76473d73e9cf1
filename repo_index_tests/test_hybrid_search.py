"""The lexical index beside each collection: in step through every change the collection
goes through, ranked with the vectors, and finding a named definition first."""

import os
import signal
import subprocess
import sys

import pandas as pd
import pytest

from repo_index.core.index.client import ChromaSettings, open_client
from repo_index.core.index.lexical import LexicalIndex, lexical_path, terms
from repo_index.core.search.hybrid import named_identifiers, rrf
from repo_index.core.search.query import search
from repo_index.core.settings import Settings
from repo_index_tests.gitutil import commit_files, make_repo
from repo_index_tests.pipeline import materialize, project_env, register

HANDLERS = "\n\n".join(
    f"def handle_{name}(request):\n    \"\"\"Answer a {name} request.\"\"\"\n    return request.reply({i})\n"
    for i, name in enumerate(["read", "write", "delete", "list", "move"] + [f"op{j}" for j in range(40)]))
def filler(tag: str, n: int = 12) -> str:
    """Functions that talk about parsing headers without being the one asked for."""
    return "\n\n".join(f"def {tag}_step_{i}(headers, body):\n    # parse the headers before the body\n"
                         f"    return parse(headers, body, {i})\n" for i in range(n))


PARSING = "\n\n".join([filler("pre"), '''def parse_headers(raw):
    lines = raw.split("\\n")
    return dict(line.split(": ", 1) for line in lines if line)''', filler("mid"), '''def read_body(stream, parse=True):
    # parse the headers, then the body that follows the headers
    headers = stream.read_headers()
    return stream.read(int(headers["length"]))''', filler("late"), '''class ResponseParser:
    def parseHTTPResponse(self, data):
        status, _, rest = data.partition("\\n")
        return status, rest''', filler("post")]) + "\n"


# Its name again at the very end: the body's last piece names it more often, in fewer
# words, than the piece with the def line, so BM25 alone prefers that piece.
LONG = "def assemble_message(parts, headers):\n    message = []\n" + "".join(
    f"    message.append(parts[{i}].render(headers, width={i}))\n" for i in range(130)
) + "".join(f"    assemble_message.calls_{i} = assemble_message.calls_{i} + 1\n" for i in range(3)) + "    return message\n"


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def settings_of(env: dict) -> Settings:
    return Settings(REPO_INDEX_DATA_DIR=env["REPO_INDEX_DATA_DIR"], OPENAI_API_KEY=env["OPENAI_API_KEY"],
                    OPENAI_BASE_URL=env["OPENAI_BASE_URL"])


def assert_lexical_in_step(env: dict, repo: str) -> dict:
    """The lexical index holds exactly the collection's ids, with the same paths; returns its
    (path, start, end) by id."""
    chroma = ChromaSettings.from_settings(settings_of(env))
    coll = open_client(chroma).get_collection(chroma.collection_name(repo))
    got = coll.get(include=["metadatas"])
    with LexicalIndex(lexical_path(chroma.lexical_dir(), chroma.collection_name(repo)), create=False) as index:
        spans = index.spans()
    assert {cid: path for cid, (path, *_) in spans.items()} == {cid: m["path"] for cid, m in zip(got["ids"], got["metadatas"])}
    return spans


@pytest.mark.slow
def test_the_lexical_index_follows_every_change_of_the_collection(tmp_path, openai_server):
    env = project_env(tmp_path, openai_server.base_url)
    src = make_repo(tmp_path / "svc", {"api/handlers.py": HANDLERS, "api/parsing.py": PARSING,
                                       "old_name.py": "def legacy_entry():\n    return 1\n"})
    register(env, "svc", src)
    materialize(env, "svc")
    first = assert_lexical_in_step(env, "svc")

    # Add, delete, move (lines shift above a function) and rename, in one commit.
    commit_files(src, {"api/extra.py": "def brand_new_helper():\n    return 'new'\n",
                       "api/handlers.py": "import os\n\n\n" + HANDLERS, "old_name.py": None,
                       "new_name.py": "def legacy_entry():\n    return 1\n", "api/parsing.py": None}, "change")
    materialize(env, "svc")
    after = assert_lexical_in_step(env, "svc")
    assert {p for p, *_ in after.values()} == {"api/extra.py", "api/handlers.py", "new_name.py"}
    assert any(first[cid][1] != after[cid][1] for cid in set(first) & set(after))  # moved, same ids
    hits = search("brand_new_helper", ["svc"], k=1, settings=settings_of(env), mode="lexical")
    assert hits[0].path == "api/extra.py"

    # A model change rebuilds the vectors only: the lexical index is not written.
    index_file = lexical_path(ChromaSettings.from_settings(settings_of(env)).lexical_dir(), "repo_index-svc")
    before = index_file.stat().st_mtime_ns
    materialize({**env, "REPO_INDEX_EMBEDDING_DIMENSIONS": "256"}, "svc")
    assert assert_lexical_in_step(env, "svc") == after and index_file.stat().st_mtime_ns == before

    # A lexical index left behind by an interrupted or older run converges on the next run.
    with LexicalIndex(index_file) as index:  # two entries lost, one stale, a row without its entry
        index.db.execute("DELETE FROM chunks WHERE rowid IN (SELECT rowid FROM chunks LIMIT 2)")
        index.db.execute("INSERT INTO chunks (chunk_id, path, start_line, end_line, language, names, text, symbol, "
                         "defines) VALUES ('stale', 'gone.py', 1, 2, 'python', '', 'x = 1', '', '')")
    materialize(env, "svc")
    assert assert_lexical_in_step(env, "svc") == after


KILLED_SYNC = """
import sys, time, pandas as pd
from repo_index.core.index import lexical
n = 1000
chunks = pd.DataFrame({"path": [f"m{i}.py" for i in range(n)], "start_line": 1, "end_line": 3, "symbol": "",
                       "language": "python", "text": [f"def f_{i}(x):\\n    return x * {i}\\n" for i in range(n)]})
real, calls = lexical.body_terms, []

def body_terms(text):  # halfway through the transaction: say so, and wait to be killed
    calls.append(1)
    if len(calls) == n // 2:
        print("inside", flush=True)
        time.sleep(600)
    return real(text)

lexical.body_terms = body_terms
with lexical.LexicalIndex(sys.argv[1]) as index:
    index.sync(chunks, [f"c{i}" for i in range(n)])
"""


def test_a_sync_killed_midway_leaves_the_old_index_and_the_next_converges(tmp_path):
    path = tmp_path / "svc.fts.sqlite"
    old = pd.DataFrame({"path": ["a.py"], "start_line": [1], "end_line": [2], "symbol": ["a"], "language": ["python"],
                        "text": ["def a():\n    return 1\n"]})
    with LexicalIndex(path) as index:
        index.sync(old, ["old"])
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SYNC, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "inside"  # 500 of 1,000 chunks written, not committed
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with LexicalIndex(path) as index:
        assert index.spans() == {"old": ("a.py", 1, 2)}  # all or nothing
        new = pd.DataFrame({"path": ["b.py"], "start_line": [3], "end_line": [4], "symbol": ["b"],
                            "language": ["python"], "text": ["def b():\n    return 2\n"]})
        stats = index.sync(new, ["new"])
        assert (stats.added, stats.deleted) == (1, 1) and index.spans() == {"new": ("b.py", 3, 4)}


def test_terms_split_identifiers_and_keep_them_whole():
    assert terms("parseHTTPResponse(max_tokens)") == ["parsehttpresponse", "parse", "http", "response",
                                                     "max_tokens", "max", "tokens"]
    assert named_identifiers("where is parse_headers called") == {"parse_headers"}
    assert named_identifiers("rotate the log file") == set()
    assert named_identifiers("ResponseParser") == {"responseparser"}
    assert rrf(["a", "b"], ["b", "c"]) == {"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 62}


@pytest.mark.slow
def test_identifiers_are_found_first_and_repositories_fuse(tmp_path, openai_server):
    env = project_env(tmp_path, openai_server.base_url)
    register(env, "svc", make_repo(tmp_path / "svc", {"api/handlers.py": HANDLERS, "api/parsing.py": PARSING,
                                                      "api/long.py": LONG}))
    register(env, "docs", make_repo(tmp_path / "docs", {"render/pages.py": (
        "def render_page(page):\n    \"\"\"Render a page with its headers.\"\"\"\n    return page.body\n\n\n"
        "def parse_front_matter(text):\n    \"\"\"Parse the headers block at the top of a page.\"\"\"\n"
        "    return text.split('---')[1]\n")}))
    materialize(env, "svc")
    materialize(env, "docs")
    settings = settings_of(env)

    for query, definition in [("parse_headers", "def parse_headers("), ("parseHTTPResponse", "def parseHTTPResponse("),
                              ("where is read_body defined", "def read_body(")]:
        line = line_of(PARSING, definition)
        [first, *_] = search(query, ["svc"], k=3, settings=settings)
        assert first.path == "api/parsing.py" and first.start_line <= line <= first.end_line, (query, first)
    # A function whose body spans several chunks: its definition is the chunk with its first
    # line, not a shorter piece of its body named after it.
    chroma = ChromaSettings.from_settings(settings)
    with LexicalIndex(lexical_path(chroma.lexical_dir(), "repo_index-svc"), create=False) as index:
        assert len([p for p, *_ in index.spans().values() if p == "api/long.py"]) > 2
    [first, *_] = search("assemble_message", ["svc"], k=3, settings=settings)
    assert first.path == "api/long.py" and first.start_line <= line_of(LONG, "def assemble_message(") <= first.end_line

    # Across repositories: fused per repository, merged by fused score, one hit per place.
    hits = search("parse the headers", None, k=6, settings=settings)
    assert {h.repo for h in hits} == {"svc", "docs"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    places = [(h.repo, h.path, h.start_line) for h in hits]
    assert len(places) == len(set(places))
    for a in hits:
        for b in hits:
            if a is not b and (a.repo, a.path) == (b.repo, b.path):
                assert a.end_line < b.start_line or b.end_line < a.start_line
