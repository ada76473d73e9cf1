"""Local models by hub id (from the Hugging Face cache only) or by folder, described from
their own files, embedded with the prefixes of each side; and the prefixes of known models."""

import shutil

import numpy as np
import pytest

from repo_index.core.embed.cache import text_key
from repo_index.core.embed.model import LOCAL, ModelError, from_collection_metadata, resolve_model
from repo_index.core.embed.prefixes import known_prefixes
from repo_index.core.embed.providers import make_embedder
from repo_index_tests.model_folders import copy_bundled_model, direct_vectors


def test_known_models_get_the_prefixes_their_cards_ask_for():
    assert known_prefixes("intfloat/e5-small-v2") == ("query: ", "passage: ")
    assert known_prefixes("/models/multilingual-e5-base/") == ("query: ", "passage: ")
    assert known_prefixes("BAAI/bge-small-en-v1.5") == ("Represent this sentence for searching relevant passages: ", "")
    assert known_prefixes("nomic-embed-text") == ("search_query: ", "search_document: ")
    assert known_prefixes("jinaai/jina-code-embeddings-0.5b").document == "Candidate code snippet:\n"
    for plain in ("all-MiniLM-L6-v2", "text-embedding-3-small", "BAAI/bge-m3", "e5-mistral-7b-instruct"):
        assert known_prefixes(plain) == ("", "")
    assert (LOCAL.query_prefix, LOCAL.document_prefix) == ("", "")
    # Set ones win over the table, and a prefix eats into the default chunk budget.
    e5 = resolve_model("openai", "e5-large-v2", 1024, "http://h:1/v1", document_prefix="")
    assert (e5.query_prefix, e5.document_prefix) == ("query: ", "")
    own = resolve_model("local", query_prefix="Q: ", document_prefix="search_document: ")
    assert own.name == LOCAL.name and own.default_max_tokens < LOCAL.default_max_tokens
    assert from_collection_metadata(own.collection_metadata()) == own


def test_a_model_folder_is_described_from_its_files_and_embeds_with_its_declared_prompts(tmp_path, monkeypatch):
    folder = copy_bundled_model(tmp_path / "models" / "my-minilm", {"query": "query: ", "document": "passage: "})
    model = resolve_model("local", str(folder))
    assert (model.provider, model.name, model.dimensions, model.window_tokens) == ("local", str(folder), 384, 256)
    assert (model.query_prefix, model.document_prefix) == ("query: ", "passage: ")
    # Relative to the working directory, the folder is recorded by its absolute path.
    monkeypatch.chdir(tmp_path)
    assert resolve_model("local", "./models/my-minilm") == model
    embedder = make_embedder(model)
    texts = ["def open_connection(host): return socket.create_connection(host)"]
    np.testing.assert_allclose(embedder.encode(texts, "document"), direct_vectors(folder, ["passage: " + texts[0]]),
                               atol=1e-5)
    np.testing.assert_allclose(embedder.encode(texts, "query"), direct_vectors(folder, ["query: " + texts[0]]),
                               atol=1e-5)
    # The collection's record brings back the same model, prefixes and all.
    assert from_collection_metadata(model.collection_metadata()) == model
    shutil.rmtree(folder)
    with pytest.raises(ModelError, match=f"REPO_INDEX_LOCAL_MODEL='{folder}': there is no model folder"):
        from_collection_metadata(model.collection_metadata())


def test_a_hub_id_is_found_in_the_hugging_face_cache_and_never_downloaded(tmp_path, monkeypatch):
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / "models--acme--e5-small-v2"
    copy_bundled_model(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    model = resolve_model("local", "acme/e5-small-v2")
    assert (model.name, model.dimensions, model.query_prefix, model.document_prefix) == (
        "acme/e5-small-v2", 384, "query: ", "passage: ")  # e5's, by name
    vector = make_embedder(model).encode(["parse the config file"], "query")
    np.testing.assert_allclose(vector, direct_vectors(repo / "snapshots" / revision, ["query: parse the config file"]),
                               atol=1e-5)
    with pytest.raises(ModelError, match="REPO_INDEX_LOCAL_MODEL='acme/absent-model': no such model in the Hugging "
                       "Face cache and nothing is downloaded at run time"):
        resolve_model("local", "acme/absent-model")


def test_cache_keys_cover_the_document_prefix_and_stay_those_of_unprefixed_text_without_one():
    text = "# a.py > f\ndef f(): pass"
    assert text_key(LOCAL.prefixed("document", text)) == text_key(text)  # caches built before prefixes stay valid
    nomic = resolve_model("openai", "nomic-embed-text", 768, "http://h:1/v1")
    assert text_key(nomic.prefixed("document", text)) == text_key("search_document: " + text) != text_key(text)
