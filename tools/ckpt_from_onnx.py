"""Recover a training checkpoint (for ``train --init-from``) from an fp32 bundle made before
checkpoints were saved.

Such a bundle holds only ``model.onnx``. The exporter keeps the names of most tensors
(embeddings, LayerNorms, biases, heads) but stores each encoder Linear weight transposed under
a generated name (``val_61`` …), in module order: query, key, value, attention output,
intermediate, output per layer. This tool rebuilds the torch model on the bundle's backbone,
copies every tensor in, and accepts the result only if the torch logits match ONNX Runtime's on
real texts (max abs difference ≤ 1e-4), so a wrong mapping cannot pass silently. It cannot
work on an int8, vocabulary-trimmed or attention-fused bundle (the weights are no longer the
torch weights, or not under their names).

    python -m tools.ckpt_from_onnx /work/main/artifacts/bundle artifacts/default.ckpt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def recover(bundle: Path, out: Path, texts: list[str], backbone: str | None = None) -> float:
    """Write ``out`` (model.safetensors + checkpoint.json); returns the parity max abs difference."""
    import onnx
    import torch
    from onnx import numpy_helper

    from model.scorer import Scorer
    from model.text import TextEncoder
    from training.backbone import resolve
    from training.checkpoint import save_weights
    from training.modeling import load_model
    from training.train import predict_torch

    meta = json.loads((bundle / "bundle.json").read_text())
    if meta.get("quantization", "none") != "none":
        raise SystemExit(f"{bundle}: weights are {meta['quantization']}, not fp32: cannot recover torch weights")
    cfg = meta["training_config"]
    graph = onnx.load(str(bundle / "model.onnx")).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    spec = backbone or cfg.get("backbone") or meta["backbone"]  # the name or directory training resolved
    model = load_model(str(resolve(spec).path), 0.0, True, cfg.get("severity_loss", "soft")).eval()
    state = model.state_dict()
    new: dict[str, torch.Tensor] = {k: torch.from_numpy(inits[k].copy()) for k in state if k in inits}
    generated = [n for n in (i.name for i in graph.initializer) if n.startswith("val_") and inits[n].ndim == 2]
    linear = [k for k in state if k.startswith("encoder.encoder.layer.") and k.endswith(".weight")
              and state[k].ndim == 2 and k not in new]
    if len(generated) != len(linear):
        raise SystemExit(f"{bundle}: {len(generated)} unnamed matrices for {len(linear)} Linear weights: unknown layout")
    for name, key in zip(generated, linear):
        w = torch.from_numpy(inits[name].T.copy())
        if w.shape != state[key].shape:
            raise SystemExit(f"{bundle}: {name} {tuple(w.shape)} does not fit {key} {tuple(state[key].shape)}")
        new[key] = w
    missing = [k for k in state if k not in new and not k.endswith("position_ids") and ".pooler." not in k]
    if missing:
        raise SystemExit(f"{bundle}: no ONNX tensor for {missing[:3]}")
    model.load_state_dict(new, strict=False)
    encoder = TextEncoder.from_file(str(bundle / "tokenizer.json"), max_length=meta["max_length"],
                                    prefix=meta["prefix"], pad_id=meta["pad_id"])
    torch_logits = predict_torch(model, encoder, texts)
    ort = Scorer.load(bundle).logits(texts)
    diff = max(float(np.abs(torch_logits[0] - ort[0]).max()), float(np.abs(torch_logits[1][:, 0] - ort[1]).max()),
               float(np.abs(torch_logits[2] - ort[2]).max()))
    if diff > 1e-4:
        raise SystemExit(f"{bundle}: recovered weights disagree with ONNX (max abs diff {diff:.2e}): not written")
    names = {k for k in new if not k.startswith("encoder.embeddings.word_embeddings")}
    save_weights(out, model, names, {"backbone": spec, "severity_loss": cfg.get("severity_loss", "soft"),
                                     "max_length": meta["max_length"], "bundle": str(bundle),
                                     "data_hash": meta.get("data_hash"), "untrained_heads": {},
                                     "recovered_from_onnx": {"parity_max_abs_diff": diff}})
    return diff


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path, help="an fp32 bundle directory")
    ap.add_argument("out", type=Path, help="checkpoint directory to write")
    ap.add_argument("--backbone", default=None, help="backbone name or directory (default: the bundle's)")
    args = ap.parse_args(argv)
    from training.data import load_examples

    texts = [e.text for e in load_examples(["data/challenge"])[:64]]
    diff = recover(args.bundle, args.out, texts, args.backbone)
    print(f"checkpoint written to {args.out} (torch vs ONNX max abs diff {diff:.2e} on {len(texts)} texts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
