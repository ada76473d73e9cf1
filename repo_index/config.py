"""Run configuration shown in the launchpad, with bounds and descriptions."""

from typing import Optional

import dagster as dg
from pydantic import Field

from .core.source.discovery import DEFAULT_MAX_FILE_BYTES


class FilesConfig(dg.Config):
    max_file_bytes: int = Field(
        default=DEFAULT_MAX_FILE_BYTES, ge=1_000, le=100_000_000,
        description="Files larger than this are skipped (counted as 'too_large').",
    )


class ChunkingConfig(dg.Config):
    max_tokens: Optional[int] = Field(
        default=None, ge=32, le=8191,
        description="Token budget per chunk (embedding model's tiktoken encoding, context header "
        "included). Default follows the embedder: 512 for text-embedding-3, 200 for the local "
        "all-MiniLM-L6-v2. A budget above the embedder's window is refused.",
    )
    workers: Optional[int] = Field(
        default=None, ge=1, le=64, description="Chunking processes; default: CPU count.",
    )


class EmbeddingConfig(dg.Config):
    max_concurrent: int = Field(
        default=10, ge=1, le=256,
        description="Embedding requests in flight at most. Sustained 429s halve it for a while; it grows "
        "back by one per round of successes.",
    )
    batch_size: int = Field(
        default=100, ge=1, le=2048,
        description="Inputs per embedding request at most (OpenAI accepts 2,048 inputs and 300,000 tokens "
        "per request; requests are also packed to the token limit).",
    )
    max_retries: int = Field(
        default=10, ge=0, le=50,
        description="Retries per request on 429, 5xx, timeouts and dropped connections (backoff with jitter, "
        "or the wait the server asks for).",
    )
    request_timeout_s: float = Field(
        default=60.0, ge=1.0, le=3600.0,
        description="Seconds one embedding request may take in all (connecting, sending and reading the whole "
        "answer) before it is abandoned and retried (a self-hosted server embedding large batches on a CPU may "
        "need more).",
    )
    requests_per_minute: Optional[int] = Field(
        default=None, ge=1, le=10_000_000,
        description="Requests-per-minute budget shared by every request of the step's process (parallel "
        "partitions each have their own: cap those with the 'embedding' pool), or by every worker when "
        "REPO_INDEX_CACHE_URL is set; default: none, 429s still slow the step down.",
    )
    tokens_per_minute: Optional[int] = Field(
        default=None, ge=1, le=1_000_000_000,
        description="Tokens-per-minute budget shared by every request of the step's process, or by every "
        "worker when REPO_INDEX_CACHE_URL is set; default: none.",
    )
    estimate_only: bool = Field(
        default=False,
        description="Count the tokens and estimated cost of what would be embedded (cached texts excluded); "
        "send nothing.",
    )
