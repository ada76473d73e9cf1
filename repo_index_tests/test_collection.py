"""The collection stays exactly in step with the code, in embedded and server Chroma."""

from pathlib import Path

import pytest

from repo_index.core.embed.loop import embed_chunks
from repo_index.core.embed.providers import OpenAIEmbedder
from repo_index.core.chunk.repository import chunk_repository
from repo_index.core.search.query import SearchError, search
from repo_index.core.embed.cache import VectorCache
from repo_index.core.index.client import ChromaSettings, open_client
from repo_index.core.index.lexical import LexicalIndex, lexical_path
from repo_index.core.index.sync import existing_records, sync_collection
from repo_index.core.settings import Settings
from repo_index_tests.services import chroma_server

FILES = {
    "billing/invoice.py": "def compute_invoice_total(lines):\n    return sum(l.amount for l in lines)\n\n\n"
                          "def apply_discount_code(total, code):\n    return total * 0.9 if code else total\n",
    "auth/login.py": "def verify_password_hash(user, password):\n    return user.hash == password\n",
    "legacy/old.py": "def deprecated_helper():\n    return None\n",
}


@pytest.fixture(params=["embedded", "server"])
def settings(request, tmp_path):
    if request.param == "embedded":
        yield ChromaSettings(mode="embedded", path=str(tmp_path / "chroma"))
        return
    with chroma_server(tmp_path / "chroma-server") as port:
        yield ChromaSettings(mode="server", port=port, state_dir=str(tmp_path / "state"))


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def index(root: Path, settings: ChromaSettings, server, exclude=(), model="text-embedding-3-small", dims=None):
    chunks = chunk_repository(root, max_tokens=128, exclude=exclude)
    embedder = OpenAIEmbedder(model=model, api_key="k", base_url=server.base_url, requested_dimensions=dims)
    with VectorCache(root.parent / "embeddings.sqlite") as cache:
        result = embed_chunks(chunks, embedder, cache, owner="svc", keep_vectors=False)

        def rows(indexes: list[int]):  # as the vector_collection asset reads them: from the cache, per batch
            return cache.matrix(result.model, result.dimensions, [result.keys[i] for i in indexes])

        name = settings.collection_name("svc")
        with LexicalIndex(lexical_path(settings.lexical_dir(), name)) as lexical:  # as the asset: lexical first
            moved = lexical.sync(chunks, result.chunk_ids).moved
        stats = sync_collection(open_client(settings), name, chunks, result.chunk_ids, rows, embedder.info, "c", "svc")
    return chunks, stats, moved


def records(settings):
    coll = open_client(settings).get_collection(settings.collection_name("svc"))
    return existing_records(coll)


def places(settings):
    name = settings.collection_name("svc")
    with LexicalIndex(lexical_path(settings.lexical_dir(), name), create=False) as lexical:
        return lexical.places(list(records(settings)))


def paths_in(settings):
    return {m["path"] for m in records(settings).values()}


def test_deleted_removed_renamed_and_excluded_code_leaves_the_collection(repo, settings, openai_server):
    chunks, stats, _ = index(repo, settings, openai_server)
    assert set(records(settings)) == set(chunks["chunk_id"]) and stats.added == len(chunks)

    (repo / "legacy/old.py").unlink()  # a file deleted
    (repo / "billing/invoice.py").write_text(FILES["billing/invoice.py"].split("\n\n\n")[0] + "\n")  # a function removed
    (repo / "auth/login.py").rename(repo / "auth/session.py")  # a file renamed
    chunks, stats, _ = index(repo, settings, openai_server)
    assert set(records(settings)) == set(chunks["chunk_id"])
    assert paths_in(settings) == {"billing/invoice.py", "auth/session.py"}
    coll = open_client(settings).get_collection(settings.collection_name("svc"))
    documents = coll.get(include=["documents"])["documents"]
    assert any("compute_invoice_total" in d for d in documents)
    assert not any("apply_discount_code" in d for d in documents)
    assert stats.deleted >= 3

    chunks, stats, _ = index(repo, settings, openai_server, exclude=("auth/",))  # newly excluded
    assert paths_in(settings) == {"billing/invoice.py"} and set(records(settings)) == set(chunks["chunk_id"])


def test_moved_chunks_update_lines_without_re_embedding(repo, settings, openai_server):
    index(repo, settings, openai_server)
    path = repo / "auth/login.py"
    methods = "".join(f"    def method_{i}(self, value):\n        return value * {i} + self.offset\n\n" for i in range(12))
    path.write_text(f"class InsertedAbove:\n{methods}\n\n" + path.read_text())
    openai_server.reset_counters()
    chunks, stats, moved = index(repo, settings, openai_server)
    place = [p for p in places(settings).values() if p.symbol == "verify_password_hash"]
    assert place and place[0].start_line > 36 and moved >= 1 and stats.added < len(chunks)
    # Search finds it at its new lines.
    env = Settings(OPENAI_API_KEY="k", OPENAI_BASE_URL=openai_server.base_url)
    hit = search("verify password hash", repos=["svc"], k=1, settings=env, chroma=settings)[0]
    assert (hit.symbol, hit.start_line) == ("verify_password_hash", place[0].start_line)
    assert all("verify_password_hash" not in t for t in openai_server.embedded_texts)  # the moved chunk was not re-sent


def test_search_uses_the_collections_model_and_a_model_change_is_clear(repo, settings, openai_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    env = Settings(OPENAI_API_KEY="k", OPENAI_BASE_URL=openai_server.base_url)
    index(repo, settings, openai_server, model="text-embedding-3-large", dims=256)
    hits = search("verify password hash", repos=["svc"], k=3, settings=env, chroma=settings)
    assert hits[0].path == "auth/login.py" and hits[0].symbol == "verify_password_hash"
    assert search("discount", k=2, settings=env, chroma=settings, language="python",
                  path_glob="billing/*")[0].path == "billing/invoice.py"

    # Rebuilt with another model: the old vectors are gone, queries use the new model.
    _, stats, _ = index(repo, settings, openai_server, model="text-embedding-3-small")
    assert stats.rebuilt
    openai_server.reset_counters()
    top = search("compute invoice total", repos=["svc"], settings=env, chroma=settings)[0]
    assert top.path == "billing/invoice.py" and "def compute_invoice_total" in top.text
    assert openai_server.requests_total == 1

    # Without the provider the collection was built with: a clear error, not garbage.
    no_key = Settings(OPENAI_BASE_URL="http://127.0.0.1:9")  # nothing listens
    with pytest.raises(SearchError, match="text-embedding-3-small.*rebuild"):
        search("anything", repos=["svc"], settings=no_key, chroma=settings)
    with pytest.raises(SearchError, match="no index yet"):
        search("anything", repos=["nope"], settings=no_key, chroma=settings)
