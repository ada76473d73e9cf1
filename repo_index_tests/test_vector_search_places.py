"""Search by vectors alone gives one hit per place in the code, as hybrid search does:
pieces of one long function never take two of the `k` slots."""

import pytest

from pathlib import Path

from repo_index.core.index.client import open_client
from repo_index.core.index.lexical import delete_index, lexical_path
from repo_index.core.search.query import SearchError, search
from repo_index.core.settings import Settings
from repo_index_tests.gitutil import make_repo
from repo_index_tests.pipeline import index_in_process, project_env, stored_places
from repo_index_tests.test_hybrid_search import HANDLERS, LONG, PARSING

# The words of the long function's body, which each of its pieces repeats.
QUERY = "append the rendered parts to the message with headers and width"


@pytest.mark.slow
def test_pieces_of_one_long_function_take_one_vector_slot(tmp_path, openai_server):
    env = project_env(tmp_path, openai_server.base_url)
    root = make_repo(tmp_path / "svc", {"api/long.py": LONG, "api/handlers.py": HANDLERS, "api/parsing.py": PARSING})
    chroma = index_in_process(env, "svc", root)
    settings = Settings(REPO_INDEX_DATA_DIR=env["REPO_INDEX_DATA_DIR"], OPENAI_API_KEY=env["OPENAI_API_KEY"],
                        OPENAI_BASE_URL=env["OPENAI_BASE_URL"])
    coll = open_client(chroma).get_collection(chroma.collection_name("svc"))
    places = stored_places(coll, Path(env["REPO_INDEX_DATA_DIR"]))
    pieces = [p for p in places.values() if p.path == "api/long.py"]
    assert len(pieces) > 2 and {p.symbol for p in pieces} == {"assemble_message"}  # one function, cut in pieces

    hits = search(QUERY, ["svc"], k=5, settings=settings, chroma=chroma, mode="vector")
    where = [(h.path, h.symbol) for h in hits]
    assert len(hits) == 5 and len(where) == len(set(where)), where
    # The function is still found first, by its best-ranked piece, scored by cosine similarity.
    assert hits[0].path == "api/long.py", hits[0]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Each hit carries what its chunk defines (a snippet starts at one of them).
    assert [h.defines for h in hits] == [places[h.chunk_id].defines for h in hits] and any(h.defines for h in hits)
    for a in hits:
        for b in hits:
            if a is not b and a.path == b.path:
                assert a.end_line < b.start_line or b.end_line < a.start_line

    # The records keep no lines: without the lexical index, the repository says how to get it back.
    assert delete_index(lexical_path(chroma.lexical_dir(), coll.name))
    with pytest.raises(SearchError, match=r"lexical index, which is missing .*re-run `repo-index index svc`"):
        search(QUERY, ["svc"], k=5, settings=settings, chroma=chroma, mode="vector")
