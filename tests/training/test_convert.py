"""The conversion gate on tiny bundles: a step that keeps decisions ships, one that changes them does not."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from model.bundle import MODEL_FILE, TOKENIZER_FILE
from model.scorer import Scorer
from tests.helpers import build_tiny_bundle, copy_bundle
from training.convert import build_steps, convert

TEXTS = ["my parcel never arrived", "thanks, works again", "Mein Paket ist nicht da", "where is my refund",
         "great service today", "the app crashes every time I log in", "je veux un remboursement"]


def _load(d: Path) -> Scorer:
    return Scorer.load(d, intra_op_threads=1, verify=False)


def _cfg(**kw: object) -> SimpleNamespace:
    base = {"vocab_trim": 3000, "vocab_scripts": ("LATIN",), "vocab_tail_int8": True, "trim_tokenizer": True,
            "optimize_graph": False, "fuse_attention": False,
            "fp16_weights": False}
    return SimpleNamespace(**{**base, **kw})


def test_exact_trim_passes_and_ships(tiny_bundle: Path, tmp_path: Path) -> None:
    work = copy_bundle(tiny_bundle, tmp_path / "w")
    enc = _load(work).encoder
    steps = build_steps(_cfg(), TEXTS, enc, work / TOKENIZER_FILE, {"test": TEXTS}, (2, 32))
    info = convert(work, steps, {"test": TEXTS}, 0.995, _load)
    assert info["kept"] == "fp32+vocab_trim" and info["steps"][0]["passed"] is True
    assert info["steps"][0]["agreement"] == {"test": {"severity": 1.0, "private_followup": 1.0, "sentiment": 1.0}}
    assert info["steps"][0]["outside_exact_rows"]["test"]["tokens"] == 0.0
    assert info["mib"] < info["fp32_mib"] / 4  # tiny hidden size: the int lookups weigh more
    assert sorted(p.name for p in work.glob("model*")) == [MODEL_FILE]  # candidates cleaned up
    assert info["steps"][0]["tokenizer"]["placeholders"] > 100_000
    assert (work / TOKENIZER_FILE).stat().st_size < (tiny_bundle / TOKENIZER_FILE).stat().st_size


def test_a_step_that_changes_decisions_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    other = build_tiny_bundle(tmp_path / "other", seed=1)
    texts = TEXTS * 3
    work = copy_bundle(tiny_bundle, tmp_path / "w")
    enc = _load(work).encoder
    trim = build_steps(_cfg(), texts, enc, work / TOKENIZER_FILE, {"test": texts}, (2, 32))

    def swap(src: Path, dst: Path) -> dict[str, object]:  # a real model with other weights
        shutil.copy(other / MODEL_FILE, dst)
        return {}

    info = convert(work, [*trim, ("swap", swap)], {"test": texts}, 0.995, _load)
    assert info["kept"] == "fp32+vocab_trim", info
    assert info["steps"][1]["passed"] is False and info["steps"][1]["worst"] < 0.995
    assert "swap failed the gate" in info["reason"]
    ref, got = _load(tiny_bundle).logits(TEXTS), _load(work).logits(TEXTS)
    assert all((a == b).all() for a, b in zip(ref, got))  # the trimmed (exact) model is in place


@pytest.mark.parametrize("kw", [{"vocab_trim": 0}])
def test_no_steps_keeps_fp32(tiny_bundle: Path, tmp_path: Path, kw: dict[str, object]) -> None:
    work = copy_bundle(tiny_bundle, tmp_path / "w")
    steps = build_steps(_cfg(**kw), TEXTS, _load(work).encoder, work / TOKENIZER_FILE, {"test": TEXTS}, (2, 32))
    info = convert(work, steps, {"test": TEXTS}, 0.995, _load)
    assert steps == [] and info["kept"] == "fp32" and info["reason"] == "no conversion step enabled"
