"""Quantisation-aware training: the torch fake-quantisation computes what the served per-token
int8 graph computes (checked against real ORT kernels), gradients pass through it, freezing
leaves plain Linear layers on ORT's int8 grid, and a whole QAT student build ships an int8
bundle that serves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from model.bundle import read_meta
from model.scorer import Scorer
from tests.training.test_retrain import served, tiny_cfg, write_user_csv
from training import qat
from training.modeling import load_model


def _one_matmul(path: Path, w: np.ndarray) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", w.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", w.shape[1]])],
                              [numpy_helper.from_array(w, "W")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_fake_quant_matches_the_served_int8_graph(tmp_path: Path) -> None:
    """One MatMul with an outlier activation channel: the torch fake-quant (per-token int8
    activations, per-channel int8 weights) equals the rewritten graph run by real ORT kernels to
    float rounding, the fp32 product does not, and a row scores the same alone as in a batch."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.normal(size=(64, 96)) * 0.05).astype(np.float32)
    x = rng.normal(size=(3, 11, 64)).astype(np.float32)
    x[..., 5] *= 40.0  # an outlier channel, as in the encoder
    x[0, 0, 0] = -25.0
    x[2, 3] = 0.0  # an all-zero token (ε scale, no division by zero)
    src = _one_matmul(tmp_path / "mm.onnx", w)
    info = qat.quantize_per_token(src, tmp_path / "mm.int8.onnx")
    assert info == {"int8_matmuls": 1, "fp32_matmuls": 0}
    graph = onnx.load(str(tmp_path / "mm.int8.onnx")).graph
    assert [n.op_type for n in graph.node].count("MatMulIntegerToFloat") == 1
    assert "MatMul" not in [n.op_type for n in graph.node]
    sess = ort.InferenceSession(str(tmp_path / "mm.int8.onnx"), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x})[0]
    # the integers themselves: ORT's QuantizeLinear rounds x / s exactly as the torch emulation does
    probe = onnx.load(str(tmp_path / "mm.int8.onnx"))
    probe.graph.output.append(onnx.helper.make_tensor_value_info("qpt0_x_q", onnx.TensorProto.UINT8, None))
    q_ort = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["qpt0_x_q"], {"x": x})[0].astype(np.int32).reshape(-1, 64) - 128
    xt = torch.from_numpy(x).reshape(-1, 64)
    step = torch.clamp(xt.abs().amax(dim=-1, keepdim=True), min=qat._EPS) / 127.0
    assert np.array_equal(q_ort, torch.round(xt / step).int().numpy())
    wq = qat.quantize_weight(torch.from_numpy(w.T.copy())).numpy().T  # Linear layout [out, in]
    fq = qat.fake_quant_activation_per_token(torch.from_numpy(x)).numpy() @ wq
    assert np.abs(y - fq).max() < 1e-5 * np.abs(fq).max()
    assert np.abs(y - x @ w).max() > 100 * np.abs(y - fq).max()
    assert np.array_equal(y[2, 3], np.zeros(96, np.float32))
    for i in range(3):  # batch-independent: each row alone gives the same numbers
        assert np.array_equal(sess.run(None, {"x": x[i:i + 1]})[0][0], y[i])
    # the weight grid is the one ORT's quantizer would store: scale max|w| / 127 per output column
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    assert np.allclose(inits["qpt0_ws"], np.abs(w).max(0) / 127.0)
    assert np.array_equal(inits["qpt0_wq"] * inits["qpt0_ws"], wq.astype(np.float32))


def test_fake_quant_passes_gradients_and_is_idempotent() -> None:
    x = torch.randn(2, 5, 8, requires_grad=True)
    qat.fake_quant_activation_per_token(x).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.ones_like(x))  # straight through
    w = torch.randn(6, 8)
    once = qat.quantize_weight(w)
    assert not torch.equal(once, w) and torch.equal(qat.quantize_weight(once), once)
    zero = torch.zeros(3, 4)  # an all-zero row or tensor stays zero, no division by zero
    assert torch.equal(qat.quantize_weight(zero), zero)
    assert torch.equal(qat.fake_quant_activation_per_token(zero), zero)


def test_prepare_and_freeze(backbone: Path) -> None:
    """Every encoder Linear is wrapped (6 per layer), the heads are not; training steps move the fp32
    master weights; freezing unwraps and leaves the weights on the int8 grid."""
    model = load_model(str(backbone), 0.0, True)
    n_layers = len(model.encoder.encoder.layer)
    assert qat.prepare(model) == 6 * n_layers and qat.is_prepared(model)
    assert qat.prepare(model) == 0  # idempotent
    assert isinstance(model.severity, torch.nn.Linear)
    ids = torch.tensor([[0, 100, 200, 2], [0, 300, 2, 1]])
    mask = (ids != 1).long()
    before = model.encoder.encoder.layer[0].attention.self.query.linear.weight.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    sum(o.float().pow(2).sum() for o in model(ids, mask)).backward()
    opt.step()
    assert not torch.equal(before, model.encoder.encoder.layer[0].attention.self.query.linear.weight)
    model.eval()
    with torch.no_grad():
        fq = [o.clone() for o in model(ids, mask)]
    assert qat.freeze(model) == 6 * n_layers and not qat.is_prepared(model)
    query = model.encoder.encoder.layer[0].attention.self.query
    assert isinstance(query, torch.nn.Linear) and torch.equal(qat.quantize_weight(query.weight), query.weight)
    with torch.no_grad():
        plain = model(ids, mask)
    assert any(not torch.allclose(a, b) for a, b in zip(fq, plain))  # fp32 activations now: not the same


def test_qat_student_build_ships_int8(backbone: Path, tmp_path: Path) -> None:
    """A whole teacher → QAT student build: the student keeps every layer, ships as int8 (MatMulInteger
    in the graph, the heads fp32), records the int8 figures, converts on top and serves over HTTP."""
    import onnx

    from training.pipeline import build

    data = write_user_csv(tmp_path / "tweets.csv", 160)
    out = tmp_path / "bundle"
    cfg = tiny_cfg(backbone, data, out, student_qat=True, student_epochs=1, max_student_f1_drop=1.0,
                   student_unlabeled="", vocab_trim=1000, fuse_attention=True, fp16_weights=True)
    assert build(cfg) == out
    meta = read_meta(out)
    dist = meta.metrics["distillation"]
    assert dist["shipped"] == "student" and dist["layers"] == [0, 1] and dist["teacher_layers"] == 2
    assert meta.quantization.startswith("qat-int8"), meta.quantization
    quant = meta.metrics["quantization"]
    assert quant["kept"] == "qat-int8" and quant["int8_matmuls"] == 12 and quant["fp32_matmuls"] == 4
    for key in ("agreement_with_fp32_graph", "agreement_batch_32_vs_8"):
        assert set(quant[key]) >= {"severity", "sentiment"} and all(0 <= v <= 1 for v in quant[key].values())
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx"), load_external_data=False).graph.node}
    assert {"MatMulIntegerToFloat", "MultiHeadAttention"} <= ops and "DynamicQuantizeLinear" not in ops
    conv = meta.metrics["conversion"]
    # trained on the embeddings it is served with: every step computes the same numbers (agreement 1)
    assert dist["pinned_embeddings"]["word_rows_pinned"] > 0
    assert conv["kept"] == "qat-int8+vocab_trim+fuse_attention+fp16_storage", conv["reason"]
    assert all(s["worst"] == 1.0 for s in conv["steps"] if "worst" in s), conv["steps"]
    assert json.loads((out / "eval_report.json").read_text())["sets"]["test"]["n"] > 0
    probs = Scorer.load(out).predict(["my internet is down again!!", "thanks, all good"])
    assert np.allclose(probs.severity.sum(1), 1.0)
    results, _ = served(out, ["my internet is down again!!"])
    assert results[0]["severity"] in {"none", "low", "medium", "high", "critical"}
