"""Run configuration shown in the launchpad, with bounds and descriptions."""

from typing import Optional

import dagster as dg
from pydantic import Field

from .core.discovery import DEFAULT_MAX_FILE_BYTES


class FilesConfig(dg.Config):
    max_file_bytes: int = Field(
        default=DEFAULT_MAX_FILE_BYTES, ge=1_000, le=100_000_000,
        description="Files larger than this are skipped (counted as 'too_large').",
    )


class ChunkingConfig(dg.Config):
    max_tokens: Optional[int] = Field(
        default=None, ge=16, le=8191,
        description="Token budget per chunk (embedding model's tiktoken encoding, context header "
        "included). Default follows the embedder: 512 for text-embedding-3, 200 for the local "
        "all-MiniLM-L6-v2. A budget above the embedder's window is refused.",
    )
    workers: Optional[int] = Field(
        default=None, ge=1, le=64, description="Chunking processes; default: CPU count.",
    )


class EmbeddingConfig(dg.Config):
    max_concurrent: int = Field(
        default=10, ge=1, le=256, description="Embedding requests in flight at most.",
    )
    batch_size: int = Field(
        default=100, ge=1, le=2048, description="Inputs per embedding request at most.",
    )
    max_retries: int = Field(
        default=8, ge=0, le=50,
        description="Retries per request on 429, 5xx, timeouts and dropped connections.",
    )
    estimate_only: bool = Field(
        default=False,
        description="Count the tokens and estimated cost of what would be embedded; send nothing.",
    )
