"""One embedding worker for test_shared_budget: embeds N one-chunk requests through the
real loop against an OpenAI-compatible server, on a requests-per-minute budget.

    python -m repo_index_tests.core.budget_worker BASE_URL NAME N REQUESTS_PER_MINUTE

Prints "ready" once warmed up, sends when a line arrives on stdin (so every worker starts at
once), then prints the number of requests it sent. REPO_INDEX_CACHE_URL comes from the
environment.

The warm-up (one request, no budget) is the first run's client start (about 0.7 s here):
booked at once but sent that much later, a cold start's requests would arrive in one heap
with the next ones, whatever the budget.
"""

import sys

from repo_index.core.embed.loop import embed_chunks
from repo_index.core.embed.providers import OpenAIEmbedder
from repo_index_tests.core.test_batching import chunk_table


def main() -> None:
    base_url, name, n, rpm = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    embedder = OpenAIEmbedder(api_key="test-key", base_url=base_url, timeout_s=5)
    embed_chunks(chunk_table(1, f"{name}_warm_up"), embedder)
    print("ready", flush=True)
    sys.stdin.readline()
    result = embed_chunks(chunk_table(n, name), embedder, batch_size=1, max_concurrent=10, requests_per_minute=rpm)
    print(result.stats.requests, flush=True)


if __name__ == "__main__":
    main()
