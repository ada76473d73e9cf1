"""Where one in-process `repo-index search` spends its time, phase by phase, in a fresh
process (run by bench/serving.py with the project's environment):

    python bench/serving_phases.py QUERY REPO [--vector-out FILE.npy]

Phases, in the order the CLI meets them: importing what the search imports (Chroma, the
service and its freshness, which imports dagster), importing the model's libraries (torch,
sentence-transformers), opening the Chroma client and reading the repository's
collection, loading the model (`Searcher.warm`: the load and one short encode), the
query's vector (the window check and the encode), the search with that vector ready, and
the hit repositories' freshness. Prints one JSON object of milliseconds; `--vector-out`
saves the query vector, so two versions of the code can be checked to give the same one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time

started = time.perf_counter()
ms: dict[str, float] = {}


def lap(name: str) -> None:
    global started
    now = time.perf_counter()
    ms[name] = round((now - started) * 1000, 1)
    started = now


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("query")
    ap.add_argument("repo")
    ap.add_argument("--vector-out")
    args = ap.parse_args()

    from repo_index.core.settings import get_settings
    from repo_index.serving.service import IndexService
    lap("import_search_and_service")
    for name in ("torch", "sentence_transformers"):
        importlib.import_module(name)
    lap("import_torch_sentence_transformers")
    service = IndexService(get_settings())
    [target] = service.searcher.indexed([args.repo])
    lap("chroma_open")
    service.searcher.warm()
    lap("model_load")
    vector = service.searcher.vectors.get(service.searcher.model_of(target), args.query)
    lap("query_vector")
    hits = service.searcher.search(args.query, [args.repo], k=10)
    lap("search_vector_ready")
    for repo in {h.repo for h in hits}:
        service.freshness.get(repo, hits.commits.get(repo, ""))
    lap("freshness")
    service.close()
    if args.vector_out:
        import numpy as np

        np.save(args.vector_out, vector)
    print(json.dumps(ms))


if __name__ == "__main__":
    main()
