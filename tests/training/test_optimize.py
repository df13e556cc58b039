"""Attention fusion (training.optimize.fuse_attention) on a real exported encoder, fp32 and int8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.scorer import Scorer
from tests.helpers import copy_bundle

TEXTS = ["ok", "@AcmeAir where is my bag?? 3 days now", "Lieferung kam nie an, Geld zurück bitte!!! 😡",
         "thanks, sorted", "this is the fourth time I write, order #A-5512 still missing and nobody answers " * 3]


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_fuse_attention_scores_the_same(tiny_bundle: Path, tmp_path: Path, int8: bool) -> None:
    """Every layer's attention becomes one MultiHeadAttention node; the scores of padded batches
    equal the unfused graph's, and each text scores alone as in its batch (the key-padding mask)."""
    import onnx

    from training.optimize import fuse_attention, op_counts
    from training.qat import quantize_per_token

    plain = copy_bundle(tiny_bundle, tmp_path / "plain")
    if int8:
        quantize_per_token(tiny_bundle / "model.onnx", plain / "model.onnx")
    fused = copy_bundle(plain, tmp_path / "fused")
    info = fuse_attention(plain / "model.onnx", fused / "model.onnx", num_heads=2)
    assert info["fused_attention"] == 2
    ops = op_counts(fused / "model.onnx")
    assert ops["MultiHeadAttention"] == 2 and "Softmax" not in ops and "Transpose" not in ops
    assert sum(ops.values()) < sum(op_counts(plain / "model.onnx").values()) - 2 * 12
    onnx.checker.check_model(str(fused / "model.onnx"))
    before = Scorer.load(plain, intra_op_threads=1, verify=False).logits(TEXTS)
    scorer = Scorer.load(fused, intra_op_threads=1, verify=False)
    after = scorer.logits(TEXTS)
    for a, b in zip(before, after):
        assert np.allclose(a, b, atol=1e-5), np.abs(a - b).max()
    for i, t in enumerate(TEXTS):
        for a, b in zip(after, scorer.logits([t])):
            assert np.allclose(a[i], b[0], atol=1e-5)


def test_fuse_attention_needs_the_mask_input(tiny_bundle: Path, tmp_path: Path) -> None:
    from training.optimize import fuse_attention

    with pytest.raises(ValueError, match="key-padding mask"):
        fuse_attention(tiny_bundle / "model.onnx", tmp_path / "x.onnx", num_heads=2, mask_input="mask")
