"""The instruction each known model expects before a query and before a document.

Asymmetric retrieval models are trained with one prefix on the queries and another (or
none) on the passages, and without them they find less: e5 wants `query: ` / `passage: `,
bge-*-en `Represent this sentence for searching relevant passages: ` on queries only,
nomic-embed-text `search_query: ` / `search_document: `. OpenAI's models and
all-MiniLM-L6-v2 want none. Matched on the model's name (the last part of a path or hub
id, lower case), so `/models/bge-small-en-v1.5` and `BAAI/bge-small-en-v1.5` get the same.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Prefixes(NamedTuple):
    query: str = ""
    document: str = ""


NONE = Prefixes()

_BGE_QUERY = "Represent this sentence for searching relevant passages: "
# (pattern on the model's name, prefixes), first match wins. Sources: each model's card.
_KNOWN: list[tuple[re.Pattern, Prefixes]] = [
    # e5-mistral and multilingual-e5-*-instruct take a task instruction instead: not listed.
    (re.compile(r"^(multilingual-)?e5-(small|base|large)(-v2)?$"), Prefixes("query: ", "passage: ")),
    (re.compile(r"^bge-(small|base|large)-en(-v1\.5)?$"), Prefixes(_BGE_QUERY, "")),
    (re.compile(r"^nomic-embed-text(-v1(\.5)?)?$"), Prefixes("search_query: ", "search_document: ")),
    (re.compile(r"^nomic-embed-code$"), Prefixes("Represent this query for searching relevant code: ", "")),
    # jina-code-embeddings: the nl2code task's pair (natural-language query -> code).
    (re.compile(r"^jina-code-embeddings-(0\.5b|1\.5b)$"),
     Prefixes("Find the most relevant code snippet given the following query:\n", "Candidate code snippet:\n")),
]


def known_prefixes(model: str) -> Prefixes:
    """The prefixes the model's card asks for, by name; none for a model not listed."""
    name = model.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower()
    for pattern, prefixes in _KNOWN:
        if pattern.match(name):
            return prefixes
    return NONE


def declared_prefixes(prompts: dict) -> Prefixes | None:
    """The prefixes a sentence-transformers model declares (`prompts` in its
    config_sentence_transformers.json), or None when it declares none that is not empty
    (sentence-transformers writes empty `query`/`document` prompts into every model it saves)."""
    query = prompts.get("query") or ""
    document = next((prompts[k] for k in ("document", "passage", "corpus") if prompts.get(k)), "")
    if not (query or document):
        return None
    return Prefixes(str(query), str(document))
