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

from model.bundle import MODEL_FILE, TOKENIZER_FILE, BundleMeta, file_sha256, read_meta, write_meta
from model.labels import labels_dict
from model.scorer import Scorer
from model.text import TextEncoder
from training.backbone import resolve
from training.calibrate import Calibration, calibrate
from training.config import TrainConfig
from training.data import MISSING, DataError, Example, data_hash, expand_paths, load_optional, split_examples
from training.distill import parse_layers
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
    (the torch checkpoint at ``cfg.ckpt``). ``on_epoch_end`` is passed to the training loop.

    With ``cfg.student_layers`` the fine-tuned model is the teacher of a shallower student
    (training.distill); the student ships when it passes the student gate, the teacher otherwise,
    and the other one is kept beside the bundle (``<output>.teacher`` / ``<output>.student``)."""
    import torch

    from training.checkpoint import save_weights
    from training.train import TrainResult, native_bf16, seed_everything, train

    t0 = time.monotonic()
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    if cfg.bf16 and not native_bf16():  # recorded as trained: bundle.json says bf16 false
        print("bf16: this CPU has no native bf16 (avx512_bf16 or AMX), where bf16 autocast trains ~2.7x "
              "slower than fp32: training in fp32", flush=True)
        cfg = dataclasses.replace(cfg, bf16=False)
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
    backbone, model, changed, init = _model(dataclasses.replace(cfg, init_from=cfg.teacher) if cfg.teacher else cfg)
    timings["backbone_s"] = time.monotonic() - t0
    encoder = TextEncoder.from_file(str(backbone.tokenizer_json), max_length=cfg.max_length,
                                    prefix=backbone.prefix, pad_id=backbone.pad_id)
    n_layers = int(model.encoder.config.num_hidden_layers)
    layers = parse_layers(cfg.student_layers, n_layers)  # early: a bad spec fails before training
    if cfg.student_qat and not layers:
        layers = tuple(range(n_layers))  # a quantisation-aware student of the full depth
    t1 = time.monotonic()
    if cfg.teacher:
        result = TrainResult(stopped_by="teacher checkpoint (not retrained)")
        print(f"teacher: {cfg.teacher} (not retrained)", flush=True)
    else:
        result = train(model, encoder, train_set, splits["validation"], cfg, on_epoch_end)
    timings["train_s"] = time.monotonic() - t1
    spec = init.get("backbone") or cfg.backbone  # what resolve() accepts (a name or a local directory)
    spec = str(Path(spec).resolve()) if Path(spec).is_dir() else spec
    if not cfg.teacher:
        save_weights(cfg.ckpt, model, changed, {"backbone": spec, "severity_loss": cfg.severity_loss,
                                                 "max_length": cfg.max_length, "bundle": str(cfg.out),
                                                 "data_hash": data_hash(examples), "untrained_heads": untrained,
                                                 "init_from": init or None})
    from training.checkpoint import resolve_init

    ckpt = resolve_init(cfg.teacher) if cfg.teacher else cfg.ckpt
    evals = _eval_sets(cfg, splits["test"])
    final = cfg.out
    pack = _Packer(cfg, backbone, encoder, examples, splits, train_set, untrained, evals, ckpt, init)
    if not layers:
        work = pack(model, result, final, timings, convert=True)
        t3 = time.monotonic()
        evaluate_bundle(work, train_set, evals, cfg.seed)
        timings["evaluate_s"] = time.monotonic() - t3
        timings["total_s"] = time.monotonic() - t0
        _finish(work, final, timings)
        return final
    return _distil(cfg, pack, model, result, layers, n_layers, timings, t0, on_epoch_end)


def _distil(cfg: TrainConfig, pack: _Packer, teacher: Any, t_result: Any, layers: tuple[int, ...],
            n_layers: int, timings: dict[str, float], t0: float, on_epoch_end: Any) -> Path:
    """Teacher bundle (fp32, evaluated) → student (distilled, converted, evaluated) → student gate →
    ship the winner at ``cfg.out``, the other beside it."""
    from training.distill import DistillLoss, make_student, teacher_targets
    from training.train import train

    final = cfg.out
    t_final, s_final = final.with_name(final.name + ".teacher"), final.with_name(final.name + ".student")
    # a QAT student is the int8 candidate: the teacher's own post-training int8 (which fails its gate
    # on this encoder, 0.956 agreement) is not tried, saving ~3 min
    t_work = pack(teacher, t_result, t_final, {}, convert=False, quantize=not cfg.student_qat)
    t = time.monotonic()
    t_report = evaluate_bundle(t_work, pack.train_set, pack.evals, cfg.seed)
    timings["teacher_evaluate_s"] = time.monotonic() - t
    s_train, unlabeled = _student_rows(cfg, pack)
    t = time.monotonic()
    targets = teacher_targets(teacher, pack.encoder, s_train, bf16=cfg.bf16)
    timings["teacher_targets_s"] = time.monotonic() - t
    student = make_student(teacher, layers, cfg.student_freeze_layers)
    del teacher.encoder  # the caller is done with the teacher: free its weights before training the student
    pinned: dict[str, Any] = {}
    if cfg.student_qat:  # after the teacher is freed: the served table is built beside the student's
        from training import qat

        pinned = _pin_served_embeddings(cfg, pack, student)
        print(f"student: quantisation-aware, {qat.prepare(student)} encoder Linear layers under per-token "
              f"int8 rounding, embeddings as served ({pinned})", flush=True)
    from training.checkpoint import RESUME_FILE

    s_ckpt = cfg.ckpt / "student"
    # --resume continues the student only if it had started (an interruption during the teacher's
    # training leaves no student state: the student then starts afresh)
    scfg = dataclasses.replace(cfg, learning_rate=cfg.student_learning_rate, epochs=cfg.student_epochs,
                               time_budget_s=cfg.student_time_budget_s, checkpoint_dir=str(s_ckpt),
                               freeze_layers=cfg.student_freeze_layers,
                               resume=cfg.resume and (s_ckpt / RESUME_FILE).is_file())
    loss = DistillLoss(targets, cfg.distill_temperature, cfg.distill_alpha, cfg.distill_beta,
                       corn=cfg.severity_loss == "corn")
    print(f"student: layers {list(layers)} of the teacher's {n_layers}, distilling "
          f"(T {cfg.distill_temperature}, alpha {cfg.distill_alpha}, beta {cfg.distill_beta})", flush=True)
    t = time.monotonic()
    s_result = train(student, pack.encoder, s_train, pack.splits["validation"], scfg, on_epoch_end,
                     distill=loss)
    timings["student_train_s"] = time.monotonic() - t
    if cfg.student_qat:
        qat.freeze(student)  # the weights the optimiser ended with, rounded onto ORT's int8 grid
    s_work = pack(student, s_result, s_final, {}, convert=True, qat=cfg.student_qat)
    t = time.monotonic()
    s_report = evaluate_bundle(s_work, pack.train_set, pack.evals, cfg.seed)
    timings["student_evaluate_s"] = time.monotonic() - t
    gate = student_gate(t_report, s_report, cfg.max_student_f1_drop)
    gate.update(layers=list(layers), teacher_layers=n_layers, time_budget_s=cfg.student_time_budget_s,
                unlabeled=unlabeled, pinned_embeddings=pinned or None,
                training={k: getattr(s_result, k) for k in ("epochs_run", "best_epoch", "steps", "stopped_by")},
                history=s_result.history)
    print(f"student gate: {'passed' if gate['passed'] else 'failed'} ({gate['reason']})", flush=True)
    if gate["passed"]:
        ship, keep = (s_work, "student"), (t_work, "teacher")
    else:
        t = time.monotonic()
        pack.convert(t_work)
        evaluate_bundle(t_work, pack.train_set, pack.evals, cfg.seed)
        timings["teacher_convert_s"] = time.monotonic() - t
        ship, keep = (t_work, "teacher"), (s_work, "student")
    for work, role in (ship, keep):
        meta = read_meta(work)
        write_meta(work, dataclasses.replace(meta, metrics={**meta.metrics, "distillation": {
            **gate, "shipped": ship[1], "this_bundle": role,
            "other_bundle": (t_final if role == "student" else s_final).name}}))  # a sibling directory
    timings["total_s"] = time.monotonic() - t0
    _finish(keep[0], t_final if keep[1] == "teacher" else s_final, dict(timings))
    _finish(ship[0], final, timings)
    return final


def _pin_served_embeddings(cfg: TrainConfig, pack: _Packer, student: Any) -> dict[str, Any]:
    """A QAT student trains on the embeddings its converted bundle serves (training.qat.pin_embeddings):
    the vocabulary trim's rows (training.vocab.served_table) and fp16 storage, when those steps are on."""
    from training import qat
    from training.convert import trim_choice
    from training.optimize import FP16_MIN_ELEMENTS
    from training.vocab import served_table

    fp16 = FP16_MIN_ELEMENTS if cfg.fp16_weights else 0
    rows = None
    if cfg.vocab_trim:
        kept, tail = trim_choice(cfg, [e.text for e in pack.train_set], pack.encoder, pack.backbone.tokenizer_json)
        table = student.encoder.get_input_embeddings().weight.detach().cpu().numpy()
        rows = served_table(table, kept, tail, fp16)
    return qat.pin_embeddings(student, rows, fp16)


def _student_rows(cfg: TrainConfig, pack: _Packer) -> tuple[list[Example], dict[str, Any]]:
    """The student's training rows: the training split plus the unlabeled text (training.data.
    load_unlabeled) minus what duplicates a validation, test, challenge or field text; with
    ``max_train_rows`` the unlabeled rows are capped at the same number (smoke tests)."""
    from training.data import drop_overlap, load_unlabeled

    paths = [p.strip() for p in cfg.student_unlabeled.split(",") if p.strip()]
    default = TrainConfig().student_unlabeled
    if paths == [default] and not Path(default).exists():  # run outside the repository: no default text
        print(f"student: no unlabeled text ({default} not found)", flush=True)
        paths = []
    if not paths:
        return list(pack.train_set), {"paths": [], "rows": 0}
    extra = load_unlabeled(paths, cfg.columns)
    if cfg.max_train_rows:
        extra = extra[:cfg.max_train_rows]
    reference = [*pack.splits["validation"], *(e for rows in pack.evals.values() for e in rows)]
    extra, dropped = drop_overlap(extra, reference)
    print(f"student: + {len(extra)} unlabeled rows from {', '.join(paths)} (teacher's soft labels only; "
          f"{dropped} dropped as duplicates of evaluation text)", flush=True)
    return [*pack.train_set, *extra], {"paths": paths, "rows": len(extra), "dropped_as_eval_duplicates": dropped}


def student_gate(teacher: dict[str, Any], student: dict[str, Any], max_drop: float) -> dict[str, Any]:
    """Macro-F1 per set and trained head, teacher vs student; passes when no drop exceeds ``max_drop``."""
    rows: dict[str, dict[str, dict[str, float]]] = {}
    drops = []
    for name, entry in teacher["sets"].items():
        s_entry = student["sets"].get(name)
        if s_entry is None:
            continue
        rows[name] = {}
        t_heads = {**entry["model_macro_f1"], "complaint": entry["model"]["severity"].get("complaint_macro_f1")}
        s_heads = {**s_entry["model_macro_f1"], "complaint": s_entry["model"]["severity"].get("complaint_macro_f1")}
        for head, t_f1 in t_heads.items():
            s_f1 = s_heads.get(head)
            if t_f1 is None or s_f1 is None:
                continue
            rows[name][head] = {"teacher": round(t_f1, 4), "student": round(s_f1, 4), "drop": round(t_f1 - s_f1, 4)}
            drops.append((t_f1 - s_f1, name, head))
    worst = max(drops, default=(0.0, "", ""))
    passed = bool(drops) and worst[0] <= max_drop
    reason = (f"worst macro-F1 drop {worst[0]:+.4f} ({worst[1]} {worst[2]}) "
              f"{'<=' if passed else '>'} {max_drop}" if drops else "no set to compare on")
    return {"max_f1_drop": max_drop, "macro_f1": rows, "worst_drop": round(worst[0], 4), "passed": passed,
            "reason": reason}


class _Packer:
    """Turns a trained torch model into a bundle directory (export, parity, weights gate,
    calibration, metadata, conversion gate); evaluation is left to the caller."""

    def __init__(self, cfg: TrainConfig, backbone: Any, encoder: TextEncoder, examples: list[Example],
                 splits: dict[str, list[Example]], train_set: list[Example], untrained: dict[str, str],
                 evals: dict[str, list[Example]], ckpt: Path, init: dict[str, Any]) -> None:
        self.cfg, self.backbone, self.encoder, self.examples = cfg, backbone, encoder, examples
        self.splits, self.train_set, self.untrained, self.evals = splits, train_set, untrained, evals
        self.ckpt, self.init = ckpt, init
        self.shape = (0, 0)

    def __call__(self, model: Any, result: Any, final: Path, timings: dict[str, float], convert: bool,
                 qat: bool = False, quantize: bool = True) -> Path:
        from training.export import check_parity, export_onnx
        from training.history import plot_history

        cfg, splits = self.cfg, self.splits
        work = final.with_name(final.name + f".tmp-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        t2 = time.monotonic()
        fp32_path = export_onnx(model, self.encoder, work / "model.fp32.onnx")
        parity_texts = [e.text for e in (splits["validation"] or self.train_set)[:64]]
        parity = check_parity(model, self.encoder, fp32_path, parity_texts)
        timings["export_s"] = time.monotonic() - t2
        shutil.copy(self.backbone.tokenizer_json, work / TOKENIZER_FILE)
        vocab_size = int(model.encoder.get_input_embeddings().weight.shape[0])
        self.shape = (int(model.encoder.config.num_attention_heads), int(model.encoder.config.hidden_size))
        meta = dataclasses.replace(_meta(cfg, self.backbone, self.examples, splits, vocab_size),
                                   untrained_heads=self.untrained,
                                   checkpoint=os.path.relpath(self.ckpt.resolve(), final.resolve()))
        if qat:
            quant = _qat_weights(work, fp32_path, meta, [e.text for e in splits["validation"]][:1024])
        else:
            quant = _choose_weights(cfg, work, fp32_path, meta, splits["test"] or splits["validation"],
                                    list(self.untrained), quantize=quantize)
        scorer = Scorer.load(work)
        calib = _calibrate(cfg, scorer, splits["validation"])
        meta = dataclasses.replace(scorer.meta, followup_threshold=calib.followup_threshold,
                                   complaint_threshold=calib.complaint_threshold, temperatures=calib.temperatures,
                                   complaint_rate=complaint_rate(self.train_set), complaint_prior=cfg.complaint_prior,
                                   metrics={
            "training": {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "steps": result.steps,
                         "stopped_by": result.stopped_by,
                         "best_validation_mean_macro_f1": round(result.best_score, 4)
                         if np.isfinite(result.best_score) else None,  # not trained here: no validation score
                         "history": result.history, "resumed": cfg.resume, "init_from": self.init or None,
                         "encoder_layers": int(model.encoder.config.num_hidden_layers)},
            "onnx_parity_max_abs_diff": parity, "quantization": quant})
        write_meta(work, meta)
        plot_history(result.history, work / "training_history.png", f"{cfg.name} {cfg.version}")
        t_conv = time.monotonic()  # after calibration: the gate compares decisions at the shipped thresholds
        if quant["kept"] == "qat-int8" and convert:
            self.convert(work, optimize=False)  # trim + fp16 storage of the fp32 tables, gated against int8
        elif quant["kept"] != "fp32":
            write_meta(work, dataclasses.replace(meta, metrics={**meta.metrics, "conversion": {
                "kept": "int8", "reason": "int8 shipped; the conversion steps run on fp32 only"}}))
        elif convert:
            if cfg.keep_fp32:  # the same weights unconverted, for speed comparisons (tools.bench --fp32-model)
                ref = final.with_name(final.name + ".fp32")
                shutil.rmtree(ref, ignore_errors=True)
                shutil.copytree(work, ref)
            self.convert(work)
        timings["convert_s"] = time.monotonic() - t_conv
        return work

    def convert(self, work: Path, optimize: bool = True) -> dict[str, Any]:
        cfg = self.cfg if optimize else dataclasses.replace(self.cfg, optimize_graph=False)
        return _convert(cfg, work, self.train_set, self.evals, self.encoder, self.shape)


def _install_model(work: Path, src: Path, meta: BundleMeta, quantization: str, verify: bool = False) -> Scorer:
    """Copy ``src`` in as the bundle's model, record it (kind and file hashes) and load it."""
    shutil.copy(src, work / MODEL_FILE)
    files = {MODEL_FILE: file_sha256(work / MODEL_FILE), TOKENIZER_FILE: file_sha256(work / TOKENIZER_FILE)}
    write_meta(work, dataclasses.replace(meta, quantization=quantization, files=files))
    return Scorer.load(work, verify=verify)


def _choose_weights(cfg: TrainConfig, work: Path, fp32_path: Path, meta: BundleMeta,
                    test: Sequence[Example], skip: Sequence[str] = (), quantize: bool = True) -> dict[str, Any]:
    """Install int8 weights if they pass the agreement/F1 gate, else fp32; say why. ``quantize=False``:
    the teacher of a quantisation-aware student, whose own int8 is not tried."""
    from training.export import quantize_int8

    def install(src: Path, quantization: str) -> Scorer:
        return _install_model(work, src, meta, quantization, verify=True)

    fp32 = install(fp32_path, "none")
    info: dict[str, Any] = {"fp32_mib": round(fp32_path.stat().st_size / 2**20, 1)}
    if not cfg.quantize:
        info.update(kept="fp32", reason="quantization disabled")
    elif not quantize:
        info.update(kept="fp32", reason="not tried: the quantisation-aware student is the int8 candidate")
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


def _qat_weights(work: Path, fp32_path: Path, meta: BundleMeta, texts: Sequence[str]) -> dict[str, Any]:
    """A quantisation-aware student ships as int8 (training.qat.quantize_per_token): that is the
    model it was trained as. Recorded beside it: how often its int8 decisions match the plain fp32
    graph of the same rounded weights, and how often they match themselves when the texts are
    batched differently (per-token scales: always, unless the graph is wrong)."""
    from training.qat import quantize_per_token

    def decision_agreement(x: Any, y: Any) -> dict[str, float]:
        dx, dy = decisions(x, 0.5), decisions(y, 0.5)
        return {h: round(float(np.mean(dx[h] == dy[h])), 5) for h in dx}

    fp32 = _install_model(work, fp32_path, meta, "none").predict(texts)
    int8_path = work / "model.int8.onnx"
    info: dict[str, Any] = {"fp32_mib": round(fp32_path.stat().st_size / 2**20, 1),
                            **quantize_per_token(fp32_path, int8_path)}
    scorer = _install_model(work, int8_path, meta, "qat-int8")
    info["int8_mib"] = round(int8_path.stat().st_size / 2**20, 1)
    a, b = scorer.predict(texts), scorer.predict(texts, batch_size=8)
    info.update(kept="qat-int8", reason="quantisation-aware student: trained as int8, ships as int8",
                agreement_with_fp32_graph=decision_agreement(fp32, a),
                agreement_batch_32_vs_8=decision_agreement(a, b))
    int8_path.unlink()
    fp32_path.unlink()
    print(f"weights: qat-int8, decisions equal to the fp32 graph on {info['agreement_with_fp32_graph']}, "
          f"batch 32 vs 8 on {info['agreement_batch_32_vs_8']}", flush=True)
    return info


def _convert(cfg: TrainConfig, work: Path, train_set: Sequence[Example], evals: dict[str, list[Example]],
             encoder: TextEncoder, shape: tuple[int, int]) -> dict[str, Any]:
    """Vocabulary trim → graph optimisation → fp16 storage on the installed fp32 model, gated by
    decision agreement per head on test + challenge + field (training.convert); records the result."""
    from model.bundle import read_meta
    from training.convert import build_steps, convert, serving_rss_mib

    sets = {k: [e.text for e in v] for k, v in evals.items() if v}
    base = "qat-int8" if read_meta(work).quantization == "qat-int8" else "fp32"  # what the steps start from
    steps = build_steps(cfg, [e.text for e in train_set], encoder, work / TOKENIZER_FILE, sets, shape)
    info = convert(work, steps, sets, cfg.min_conversion_agreement, lambda d: Scorer.load(d, verify=False))
    if base != "fp32":
        info["kept"] = base + info["kept"][len("fp32"):]
    meta = read_meta(work)
    files = {**meta.files, MODEL_FILE: file_sha256(work / MODEL_FILE), TOKENIZER_FILE: file_sha256(work / TOKENIZER_FILE)}
    kept = "none" if info["kept"] == "fp32" else info["kept"]  # "qat-int8…" stays as it is
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
