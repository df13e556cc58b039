"""`make model`: backbone → fine-tune → ONNX → parity → int8 gate → bundle → evaluation."""

from __future__ import annotations

import dataclasses
import os
import resource
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from model.bundle import MODEL_FILE, TOKENIZER_FILE, BundleMeta, file_sha256, write_meta
from model.labels import labels_dict
from model.scorer import Scorer
from model.text import TextEncoder
from training.backbone import resolve
from training.calibrate import Calibration, calibrate
from training.config import TrainConfig
from training.data import MISSING, DataError, Example, data_hash, expand_paths, load_optional, split_examples
from training.evaluate import HEAD_LABELS, decisions, gold_labels, head_metrics
from training.report import evaluate_bundle
from training.sources import head_status, load_training_data


def peak_rss_mib() -> float:
    """Peak resident memory of this process and its finished children, MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def complaint_rate(examples: Sequence[Example]) -> float:
    """Share of complaint-labelled rows (severity level or coarse label) that are complaints."""
    gold = [e.complaint_gold for e in examples if e.complaint_gold != MISSING]
    rate = round(sum(gold) / len(gold), 4) if gold else 0.0
    return rate if rate < 1.0 else 0.0  # all complaints: no usable prior


def _calibrate(cfg: TrainConfig, scorer: Scorer, val: Sequence[Example]) -> Calibration:
    """Temperatures and thresholds from the validation split (identity when there is none)."""
    if not val or not cfg.calibrate:
        return Calibration({}, 0.5, 0.5)
    sev, fol, sen, _ = scorer.logits([e.text for e in val])
    calib = calibrate(sev, fol, sen, [e.severity for e in val], [e.followup for e in val],
                      [e.sentiment for e in val], [e.complaint_gold for e in val])
    print(f"calibration: temperatures {calib.temperatures}, complaint threshold {calib.complaint_threshold}, "
          f"follow-up threshold {calib.followup_threshold}", flush=True)
    return calib


def compare_int8(fp32: Scorer, int8: Scorer, examples: Sequence[Example],
                 skip: Sequence[str] = ()) -> dict[str, Any]:
    """Decision agreement and macro-F1 drop per head of int8 vs fp32 on the test split
    (untrained heads in ``skip`` are left out)."""
    texts = [e.text for e in examples]
    a, b = fp32.predict(texts), int8.predict(texts)
    da, db = decisions(a, 0.5), decisions(b, 0.5)
    da, db = ({h: v for h, v in d.items() if h not in skip} for d in (da, db))
    gold = gold_labels(examples)
    agree = float(np.mean(np.concatenate([da[h] == db[h] for h in da])))
    drops = {h: head_metrics(gold[h], da[h], HEAD_LABELS[h]).get("macro_f1", 0.0)
             - head_metrics(gold[h], db[h], HEAD_LABELS[h]).get("macro_f1", 0.0) for h in da}
    return {"agreement": round(agree, 5), "f1_drop": {h: round(float(v), 5) for h, v in drops.items()}}


def _meta(cfg: TrainConfig, backbone: Any, examples: list[Example], splits: dict[str, list[Example]],
          vocab_size: int) -> BundleMeta:
    return BundleMeta(
        name=cfg.name, version=cfg.version, backbone=backbone.name, max_length=cfg.max_length,
        prefix=backbone.prefix, pad_id=backbone.pad_id, labels=labels_dict(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        data_hash=data_hash(examples),
        training_config={**cfg.to_dict(), "vocab_size": vocab_size},
        split={"rule": "sha256(id)[:8] % 100: <80 train, <90 validation, else test",
               "sizes": {k: len(v) for k, v in splits.items()},
               "files": [str(p) for p in expand_paths(cfg.data)]},
    )


def _model(cfg: TrainConfig) -> tuple[Any, Any, set[str], dict[str, Any]]:
    """Backbone + fresh heads, or the warm-start checkpoint's weights on top (``--init-from``);
    also the names of the parameters that will differ from the backbone and the init record."""
    from training.checkpoint import apply_weights, load_weights, resolve_init
    from training.modeling import load_model

    state, init = {}, {}
    name = cfg.backbone
    if cfg.init_from:
        ckpt = resolve_init(cfg.init_from)
        state, info = load_weights(ckpt)
        if cfg.backbone != TrainConfig().backbone and cfg.backbone != info["backbone"]:
            raise DataError(f"--init-from {ckpt}: trained on backbone {info['backbone']!r}, not {cfg.backbone!r}")
        name = info["backbone"]
        init = {"checkpoint": str(ckpt), "backbone": name, "from_bundle": info.get("bundle"),
                "data_hash": info.get("data_hash")}
        print(f"warm start from {ckpt} ({len(state)} tensors, backbone {name})", flush=True)
    backbone = resolve(name)
    model = load_model(str(backbone.path), cfg.dropout, cfg.freeze_embeddings, cfg.severity_loss, cfg.freeze_layers)
    if state:
        apply_weights(model, state, Path(cfg.init_from))
    # the BERT pooler is never used (mean pooling), so it is not part of what training changes
    changed = set(state) | {n for n, p in model.named_parameters() if p.requires_grad and ".pooler." not in n}
    return backbone, model, changed, init


def build(cfg: TrainConfig, on_epoch_end: Any = None) -> Path:
    """Run the whole pipeline; the bundle appears at ``cfg.output_dir`` only when complete
    (the torch checkpoint at ``cfg.ckpt``). ``on_epoch_end`` is passed to the training loop."""
    import torch

    from training.checkpoint import save_weights
    from training.export import check_parity, export_onnx
    from training.history import plot_history
    from training.train import seed_everything, train

    t0 = time.monotonic()
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    seed_everything(cfg.seed)
    timings: dict[str, float] = {}
    examples = load_training_data(cfg)
    splits = split_examples(examples)
    train_set = splits["train"][: cfg.max_train_rows or None]
    untrained = head_status(train_set)
    if {"severity", "private_followup", "sentiment"} <= set(untrained):
        raise DataError("no head has labels in the training split: nothing to train")
    print(f"data: {len(examples)} rows → " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()), flush=True)
    for head, why in untrained.items():
        print(f"head {head}: not trained ({why})", flush=True)
    backbone, model, changed, init = _model(cfg)
    timings["backbone_s"] = time.monotonic() - t0
    encoder = TextEncoder.from_file(str(backbone.tokenizer_json), max_length=cfg.max_length,
                                    prefix=backbone.prefix, pad_id=backbone.pad_id)
    t1 = time.monotonic()
    result = train(model, encoder, train_set, splits["validation"], cfg, on_epoch_end)
    timings["train_s"] = time.monotonic() - t1
    spec = init.get("backbone") or cfg.backbone  # what resolve() accepts (a name or a local directory)
    spec = str(Path(spec).resolve()) if Path(spec).is_dir() else spec
    save_weights(cfg.ckpt, model, changed, {"backbone": spec, "severity_loss": cfg.severity_loss,
                                             "max_length": cfg.max_length, "bundle": str(cfg.out),
                                             "data_hash": data_hash(examples), "untrained_heads": untrained,
                                             "init_from": init or None})

    final = cfg.out
    work = final.with_name(final.name + f".tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t2 = time.monotonic()
    fp32_path = export_onnx(model, encoder, work / "model.fp32.onnx")
    parity_texts = [e.text for e in (splits["validation"] or train_set)[:64]]
    parity = check_parity(model, encoder, fp32_path, parity_texts)
    timings["export_s"] = time.monotonic() - t2
    shutil.copy(backbone.tokenizer_json, work / TOKENIZER_FILE)
    vocab_size = int(model.encoder.get_input_embeddings().weight.shape[0])
    shape = (int(model.encoder.config.num_attention_heads), int(model.encoder.config.hidden_size))
    del model

    meta = dataclasses.replace(_meta(cfg, backbone, examples, splits, vocab_size), untrained_heads=untrained,
                               checkpoint=os.path.relpath(cfg.ckpt.resolve(), cfg.out.resolve()))
    quant = _choose_weights(cfg, work, fp32_path, meta, splits["test"] or splits["validation"], list(untrained))
    evals = _eval_sets(cfg, splits["test"])
    scorer = Scorer.load(work)
    calib = _calibrate(cfg, scorer, splits["validation"])
    meta = dataclasses.replace(scorer.meta, followup_threshold=calib.followup_threshold,
                               complaint_threshold=calib.complaint_threshold, temperatures=calib.temperatures,
                               complaint_rate=complaint_rate(train_set), complaint_prior=cfg.complaint_prior,
                               metrics={
        "training": {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "steps": result.steps,
                     "stopped_by": result.stopped_by, "best_validation_mean_macro_f1": round(result.best_score, 4),
                     "history": result.history, "resumed": cfg.resume, "init_from": init or None},
        "onnx_parity_max_abs_diff": parity, "quantization": quant})
    write_meta(work, meta)
    plot_history(result.history, work / "training_history.png", f"{cfg.name} {cfg.version}")
    t_conv = time.monotonic()  # after calibration: the gate compares decisions at the shipped thresholds
    if quant["kept"] == "fp32":
        _convert(cfg, work, train_set, evals, encoder, shape)
    else:
        write_meta(work, dataclasses.replace(meta, metrics={**meta.metrics, "conversion": {
            "kept": "int8", "reason": "int8 shipped; the conversion steps run on fp32 only"}}))
    timings["convert_s"] = time.monotonic() - t_conv
    t3 = time.monotonic()
    evaluate_bundle(work, train_set, evals, cfg.seed)
    timings["evaluate_s"] = time.monotonic() - t3
    timings["total_s"] = time.monotonic() - t0
    _finish(work, final, timings)
    return final


def _choose_weights(cfg: TrainConfig, work: Path, fp32_path: Path, meta: BundleMeta,
                    test: Sequence[Example], skip: Sequence[str] = ()) -> dict[str, Any]:
    """Install int8 weights if they pass the agreement/F1 gate, else fp32; say why."""
    from training.export import quantize_int8

    def install(src: Path, quantization: str) -> Scorer:
        shutil.copy(src, work / MODEL_FILE)
        files = {MODEL_FILE: file_sha256(work / MODEL_FILE), TOKENIZER_FILE: file_sha256(work / TOKENIZER_FILE)}
        write_meta(work, dataclasses.replace(meta, quantization=quantization, files=files))
        return Scorer.load(work)

    fp32 = install(fp32_path, "none")
    info: dict[str, Any] = {"fp32_mib": round(fp32_path.stat().st_size / 2**20, 1)}
    if not cfg.quantize:
        info.update(kept="fp32", reason="quantization disabled")
    else:
        int8_path = quantize_int8(fp32_path, work / "model.int8.onnx")
        info["int8_mib"] = round(int8_path.stat().st_size / 2**20, 1)
        int8 = install(int8_path, "int8-dynamic")
        info.update(compare_int8(fp32, int8, test, skip))
        worst = max(info["f1_drop"].values())
        if info["agreement"] >= cfg.min_int8_agreement and worst <= cfg.max_int8_f1_drop:
            info.update(kept="int8", reason="passed the agreement and F1 gate")
        else:
            info.update(kept="fp32", reason=f"int8 failed the gate: agreement {info['agreement']:.4f} "
                        f"(min {cfg.min_int8_agreement}), worst F1 drop {worst:.4f} (max {cfg.max_int8_f1_drop})")
            install(fp32_path, "none")
        int8_path.unlink()
    fp32_path.unlink()
    print(f"weights: {info['kept']} ({info['reason']})", flush=True)
    return info


def _convert(cfg: TrainConfig, work: Path, train_set: Sequence[Example], evals: dict[str, list[Example]],
             encoder: TextEncoder, shape: tuple[int, int]) -> dict[str, Any]:
    """Vocabulary trim → graph optimisation → fp16 storage on the installed fp32 model, gated by
    decision agreement per head on test + challenge + field (training.convert); records the result."""
    from model.bundle import read_meta
    from training.convert import build_steps, convert, serving_rss_mib

    sets = {k: [e.text for e in v] for k, v in evals.items() if v}
    steps = build_steps(cfg, [e.text for e in train_set], encoder, work / TOKENIZER_FILE, sets, shape)
    info = convert(work, steps, sets, cfg.min_conversion_agreement, lambda d: Scorer.load(d, verify=False))
    meta = read_meta(work)
    files = {**meta.files, MODEL_FILE: file_sha256(work / MODEL_FILE), TOKENIZER_FILE: file_sha256(work / TOKENIZER_FILE)}
    kept = "none" if info["kept"] == "fp32" else info["kept"]
    meta = dataclasses.replace(meta, quantization=kept, files=files)
    write_meta(work, meta)
    probe = [t for v in sets.values() for t in v][:256]
    info["serving_rss_mib"] = {"arena_on": serving_rss_mib(work, probe, True),
                               "arena_off": serving_rss_mib(work, probe, False)}
    print(f"conversion: {info['kept']} ({info['reason']}), model {info['mib']} MiB, serving RSS "
          f"{info['serving_rss_mib']['arena_off']['after_scoring']:.0f} MiB", flush=True)
    write_meta(work, dataclasses.replace(meta, metrics={**meta.metrics, "conversion": info}))
    return info


def _finish(work: Path, final: Path, timings: dict[str, float]) -> None:
    """Record time and peak memory, then move the bundle into place."""
    from model.bundle import read_meta
    from training.report import write_model_card

    meta = read_meta(work)
    training = {**meta.metrics.get("training", {}), **{k: round(v, 1) for k, v in timings.items()},
                "peak_rss_mib": round(peak_rss_mib(), 1)}
    size = sum(p.stat().st_size for p in work.iterdir()) / 2**20
    write_meta(work, dataclasses.replace(meta, metrics={**meta.metrics, "training": training,
                                                        "bundle_mib": round(size, 1)}))
    write_model_card(work)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    work.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    print(f"bundle written to {final}: {training['total_s']:.0f} s total, "
          f"peak memory {training['peak_rss_mib']:.0f} MiB, {size:.1f} MiB on disk", flush=True)


def _eval_sets(cfg: TrainConfig, test: list[Example]) -> dict[str, list[Example]]:
    """The sets the gate and the report use: the test split, and challenge + field read in our
    schema (never with the user's column names)."""
    return {"test": test, "challenge": load_optional(cfg.challenge), "field": load_optional(cfg.field_set)}


def convert_existing(src: Path, dst: Path, cfg: TrainConfig) -> Path:
    """Run the conversion gate on an already built fp32 bundle (no retraining): copy ``src`` to
    ``dst``, convert, re-evaluate and rewrite the model card. ``dst`` must not exist."""
    import json

    from model.bundle import read_meta
    from training.report import write_model_card

    if read_meta(src).quantization != "none":
        raise ValueError(f"{src} is not an fp32 bundle (quantization {read_meta(src).quantization!r})")
    shutil.copytree(src, dst)
    splits = split_examples(load_training_data(cfg))  # the same rows and split as the build
    evals = _eval_sets(cfg, splits["test"])
    scorer = Scorer.load(dst)
    conf = json.loads((resolve(scorer.meta.backbone).path / "config.json").read_text())
    shape = (int(conf["num_attention_heads"]), int(conf["hidden_size"]))
    train_set = splits["train"][: cfg.max_train_rows or None]
    _convert(cfg, dst, train_set, evals, scorer.encoder, shape)
    evaluate_bundle(dst, train_set, evals, cfg.seed)
    write_model_card(dst)
    return dst
