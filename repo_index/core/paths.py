"""Where the project keeps things: project root, data folder, registry file.

Every entry point (Makefile, CLI, `dagster dev`, step processes) resolves the same
locations, so the UI, the CLI and the daemon share one instance and one data folder.
Environment variables override each location (tests point them at temp dirs).
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "REPO_INDEX_HOME"
DATA_ENV = "REPO_INDEX_DATA_DIR"
REGISTRY_ENV = "REPO_INDEX_REGISTRY"


def project_root() -> Path:
    """The folder holding dagster.yaml: $REPO_INDEX_HOME, the source checkout, or the cwd."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "dagster.yaml").is_file():
        return checkout
    return Path.cwd()


def data_dir() -> Path:
    """Git-ignored folder for Dagster storage, Chroma, the embedding cache and clones."""
    path = Path(os.environ.get(DATA_ENV) or project_root() / ".data")
    path.mkdir(parents=True, exist_ok=True)
    return path


def registry_path() -> Path:
    return Path(os.environ.get(REGISTRY_ENV) or project_root() / "repositories.yaml")
