"""Quantisation-aware fine-tuning for an int8 model that scores a message the same in any batch.

Post-training dynamic int8 of the encoder fails the agreement gate: ORT's ``quantize_dynamic``
quantises each activation *per tensor*, so one outlier anywhere in the batch coarsens every
token's grid (0.898 of severity decisions agree with fp32), and a message's scores depend on the
messages batched with it. Here every encoder ``nn.Linear`` (Q, K, V, attention output, FFN up and
down: 72 in e5-small) is instead quantised like this, in training and in the served graph alike:

- the activation per token (the last axis), symmetric int8: ``m = max|x|``,
  ``s = m / 127``, ``q = round(x / s)``, value ``q · s``: a token's grid depends on that token alone;
- the weight per output channel, symmetric int8 as ORT's quantizer stores it:
  ``scale = max|w| / 127``, ``q = round(w / scale)`` in −127..127;
- rounding half to even everywhere (``torch.round``, ONNX ``QuantizeLinear``, ``numpy.rint``).

:class:`FakeQuantLinear` computes that in torch with straight-through gradients; :func:`freeze`
writes the rounded weights back (exactly on the int8 grid) and removes the wrappers;
:func:`quantize_per_token` rewrites the plain export into uint8 × int8 ``MatMulIntegerToFloat``
nodes (ORT's own integer kernel) behind a per-token quantiser (one scale per token). The
served graph then computes what the trained model computed. The heads (three small Linear layers
on the pooled vector) stay fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def quantize_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 as ORT's quantizer computes it, dequantised.
    ``w`` is a Linear weight ``[out, in]``: one scale per row (= per column of the ONNX MatMul B)."""
    absmax = w.detach().float().abs().amax(dim=1, keepdim=True)
    scale = absmax / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (torch.clamp(torch.round(w.float() / scale), -127, 127) * scale).to(w.dtype)


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    return w + (quantize_weight(w) - w).detach()


class FakeQuantLinear(nn.Module):
    """``nn.Linear`` computed on fake-quantised input and weight (the wrapped layer keeps the fp32
    master weight the optimiser updates)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(fake_quant_activation_per_token(x), fake_quant_weight(self.linear.weight), self.linear.bias)


def _encoder_linears(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, layer) of every encoder Linear or wrapper, collected before any change."""
    found = []
    for layer in model.encoder.encoder.layer:  # type: ignore[union-attr]
        for parent in layer.modules():
            if isinstance(parent, FakeQuantLinear):
                continue
            for name, child in parent.named_children():
                if isinstance(child, (nn.Linear, FakeQuantLinear)):
                    found.append((parent, name, child))
    return found


def prepare(model: nn.Module) -> int:
    """Wrap every encoder Linear in place; returns how many were wrapped."""
    n = 0
    for parent, name, child in _encoder_linears(model):
        if isinstance(child, nn.Linear):
            setattr(parent, name, FakeQuantLinear(child))
            n += 1
    return n


@torch.no_grad()
def freeze(model: nn.Module) -> int:
    """Unwrap, writing the int8-rounded weights into the plain Linear layers; returns the count."""
    n = 0
    for parent, name, child in _encoder_linears(model):
        if isinstance(child, FakeQuantLinear):
            child.linear.weight.copy_(quantize_weight(child.linear.weight))
            setattr(parent, name, child.linear)
            n += 1
    return n


@torch.no_grad()
def pin_embeddings(model: nn.Module, word_rows: np.ndarray | None, fp16_min_elements: int) -> dict[str, int]:
    """Set the embeddings block to the values the converted bundle serves, and freeze it: the word
    table to ``word_rows`` (training.vocab.served_table: trimmed, tail int8, fp16-stored), every
    other embedding tensor of at least ``fp16_min_elements`` rounded to float16 (0 = none).

    Trained on these, the student's exported graph and its trimmed fp16 conversion compute the same
    numbers, so the conversion gate compares a graph with itself. Without this, int8 rounding turns
    the conversion's float-rounding differences into flipped decisions (0.973 agreement)."""
    emb = model.encoder.embeddings  # type: ignore[union-attr]
    word = emb.word_embeddings.weight
    out = {"word_rows_pinned": 0, "fp16_rounded_tensors": 0}
    if word_rows is not None:
        if tuple(word_rows.shape) != tuple(word.shape):
            raise ValueError(f"served word table {word_rows.shape} does not match the model's {tuple(word.shape)}")
        word.copy_(torch.from_numpy(np.ascontiguousarray(word_rows, dtype=np.float32)))
        out["word_rows_pinned"] = int(word.shape[0])
    for p in emb.parameters():
        if (p is not word or word_rows is None) and fp16_min_elements and p.numel() >= fp16_min_elements:
            p.copy_(p.half().float())
            out["fp16_rounded_tensors"] += 1
        p.requires_grad_(False)
    return out


def is_prepared(model: nn.Module) -> bool:
    return any(isinstance(c, FakeQuantLinear) for _, _, c in _encoder_linears(model))


_EPS = 1e-30  # the scale floor of an all-zero token (its values quantise to 0)


def fake_quant_activation_per_token(x: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 per token (the last axis), exactly as :func:`quantize_per_token`'s graph:
    ``m = max|x|``, ``s = m / 127``, ``q = round(x / s)`` (what ONNX ``QuantizeLinear`` computes),
    value ``q · s``. Each token's scale depends on that token alone, so a message scores the same
    in any batch."""
    with torch.no_grad():
        xf = x.detach().float()
        s = torch.clamp(xf.abs().amax(dim=-1, keepdim=True), min=_EPS) / 127.0
        deq = (torch.round(xf / s) * s).to(x.dtype)
    return x + (deq - x).detach()


def quantize_per_token(src: Path, dst: Path, min_columns: int = 16) -> dict[str, int]:
    """The serving graph with per-token activation scales: every MatMul with a constant weight of at
    least ``min_columns`` outputs (the encoder's, not the heads') becomes, on ``x`` of any rank,

        s = max(max|x| over the last axis, ε) / 127           (one scale per token, keepdims)
        q = QuantizeLinear(x / s, 1, zero point 128)           (uint8 round(x / s) + 128)
        y = MatMulIntegerToFloat(q, W_int8, b_scale = w_scale, a_zero_point = 128) · s

    with ``W_int8`` per output channel (``w_scale = max|w| / 127``, as :func:`quantize_weight`).
    ``x / s`` is the division per-axis ``QuantizeLinear`` does itself, so the integers are the same
    as with one scale per row on a ``[tokens, features]`` view (the previous graph), without the
    views: no Reshape, Shape, Slice, Concat or zero-point tensor per MatMul, six nodes per quantised
    activation and two per MatMul (1,161 → 777 nodes for e5-small; bit-identical outputs). An
    input shared by several MatMuls (Q, K and V) is quantised once. uint8 × int8 is the kernel
    ORT's own dynamic quantisation uses; only the activation scale differs (per token, not per
    tensor), so a message's scores do not depend on its batch."""
    import onnx
    from onnx import helper, numpy_helper

    from training.optimize import prune, use_ms_domain

    model = onnx.load(str(src))
    graph = model.graph
    use_ms_domain(model)
    inits = {i.name: i for i in graph.initializer}
    opset = next((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), 18)
    consts = {"qpt_127": np.array(127.0, np.float32), "qpt_eps": np.array(_EPS, np.float32),
              "qpt_one": np.array(1.0, np.float32), "qpt_axis_last": np.array([-1], np.int64),
              "qpt_zp_a": np.array(128, np.uint8), "qpt_zp_b": np.array(0, np.int8)}
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    quantised: dict[str, tuple[str, str]] = {}  # activation → (uint8 like x, scale with a last axis of 1)
    nodes: list[onnx.NodeProto] = []
    done = skipped = 0
    for node in graph.node:
        w_init = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if w_init is None or len(w_init.dims) != 2 or w_init.dims[1] < min_columns:
            skipped += node.op_type == "MatMul"
            nodes.append(node)
            continue
        x, p = node.input[0], f"qpt{done}"
        if x not in quantised:
            a = f"{p}_x"
            nodes += [helper.make_node("Abs", [x], [f"{a}_abs"]),
                      helper.make_node("ReduceMax", [f"{a}_abs", "qpt_axis_last"], [f"{a}_max0"], keepdims=1)
                      if opset >= 18 else  # axes became an input in opset 18
                      helper.make_node("ReduceMax", [f"{a}_abs"], [f"{a}_max0"], axes=[-1], keepdims=1),
                      helper.make_node("Max", [f"{a}_max0", "qpt_eps"], [f"{a}_max"]),
                      helper.make_node("Div", [f"{a}_max", "qpt_127"], [f"{a}_s"]),
                      helper.make_node("Div", [x, f"{a}_s"], [f"{a}_steps"]),
                      helper.make_node("QuantizeLinear", [f"{a}_steps", "qpt_one", "qpt_zp_a"], [f"{a}_q"])]
            quantised[x] = (f"{a}_q", f"{a}_s")
        q, s = quantised[x]
        w = numpy_helper.to_array(w_init).astype(np.float32)
        w_scale = np.abs(w).max(axis=0) / 127.0
        w_scale = np.where(w_scale > 0, w_scale, 1.0).astype(np.float32)
        w_q = np.clip(np.rint(w / w_scale), -127, 127).astype(np.int8)
        graph.initializer.extend([numpy_helper.from_array(w_q, f"{p}_wq"), numpy_helper.from_array(w_scale, f"{p}_ws")])
        nodes += [helper.make_node("MatMulIntegerToFloat", [q, f"{p}_wq", "qpt_one", f"{p}_ws", "qpt_zp_a", "qpt_zp_b"],
                                   [f"{p}_y"], domain="com.microsoft"),
                  helper.make_node("Mul", [f"{p}_y", s], [node.output[0]], name=node.name)]
        done += 1
    prune(graph, nodes)  # the fp32 weights of the replaced MatMuls go
    onnx.save(model, str(dst))
    return {"int8_matmuls": done, "fp32_matmuls": skipped}
