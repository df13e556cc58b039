"""Export the torch model to ONNX, check parity, and quantise to int8 with ONNX Runtime."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from model.labels import ONNX_OUTPUTS
from model.text import TextEncoder
from training.modeling import MultiTaskModel
from training.train import predict_torch


class ExportError(RuntimeError):
    """ONNX export or a parity check failed."""


def export_onnx(model: MultiTaskModel, encoder: TextEncoder, path: Path) -> Path:
    """Export with dynamic batch and sequence axes (torch's default dynamo exporter + onnxscript)."""
    model.eval()
    sample = encoder.encode(["a sample message to trace the graph with", "hi"])
    args = (torch.from_numpy(sample.input_ids), torch.from_numpy(sample.attention_mask))
    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("sequence", min=2, max=512)
    dyn = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, args, input_names=["input_ids", "attention_mask"],
                                    output_names=list(ONNX_OUTPUTS), dynamic_shapes=dyn,
                                    dynamo=True, optimize=True, verbose=False)
    program.save(str(path), external_data=False)
    return path


def onnx_logits(path: Path, encoder: TextEncoder, texts: Sequence[str], batch_size: int = 64) -> list[np.ndarray]:
    """Raw logits from an ONNX file, batched by length like the runtime scorer."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids, _ = encoder.token_ids(texts)
    order = np.argsort([len(r) for r in ids], kind="stable")
    outs = [np.zeros((len(texts), 5)), np.zeros((len(texts), 1)), np.zeros((len(texts), 3))]
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        enc = encoder.pad([ids[i] for i in rows], [False] * len(rows))
        res = sess.run(list(ONNX_OUTPUTS), {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask})
        for out, r in zip(outs, res):
            out[rows] = r
    return outs


def check_parity(model: MultiTaskModel, encoder: TextEncoder, path: Path, texts: Sequence[str],
                 atol: float = 1e-4) -> float:
    """Max |torch − ONNX| over all logits on real inputs; raises if above ``atol``."""
    ref = predict_torch(model, encoder, texts)
    got = onnx_logits(path, encoder, texts)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ref, got))
    if diff > atol:
        raise ExportError(f"ONNX export differs from torch by {diff:.2e} > {atol:.0e}")
    return diff


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantisation of MatMul/Gemm weights (activations stay float)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm", "Gather"], extra_options={"MatMulConstBOnly": True})
    return dst
