"""Distillation into a shallower student: layer choice, the student's copied weights, the loss,
the student gate, and a whole teacher → student build with the tiny backbone that ships one
bundle, keeps the other beside it and serves the shipped one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from model.bundle import read_meta
from model.scorer import Scorer
from tests.training.test_retrain import served, tiny_cfg, write_user_csv
from training.distill import DistillLoss, make_student, parse_layers, teacher_targets
from training.modeling import load_model, multitask_loss
from training.pipeline import student_gate


def test_parse_layers() -> None:
    assert parse_layers("6", 12) == (0, 2, 4, 7, 9, 11)
    assert parse_layers("4", 12) == (0, 4, 7, 11)
    assert parse_layers("1", 12) == (11,)
    assert parse_layers("0,3,11", 12) == (0, 3, 11)
    assert parse_layers("", 12) == ()
    for bad in ("12", "0", "3,1", "0,0,5", "0,12", ",".join(map(str, range(12)))):
        with pytest.raises(ValueError):
            parse_layers(bad, 12)


def test_student_copies_the_kept_layers_and_trains_them(backbone: Path) -> None:
    teacher = load_model(str(backbone), 0.0, True)
    student = make_student(teacher, (1,))
    assert len(student.encoder.encoder.layer) == 1 and student.encoder.config.num_hidden_layers == 1
    assert len(teacher.encoder.encoder.layer) == 2  # the teacher is not touched
    t_layer, s_layer = teacher.encoder.encoder.layer[1], student.encoder.encoder.layer[0]
    for (n, a), (_, b) in zip(t_layer.named_parameters(), s_layer.named_parameters()):
        assert torch.equal(a, b), n
        assert a.data_ptr() != b.data_ptr()  # a copy, not shared storage
    assert torch.equal(teacher.severity.weight, student.severity.weight)
    assert not student.encoder.embeddings.word_embeddings.weight.requires_grad
    assert all(p.requires_grad for p in s_layer.parameters())
    frozen = make_student(teacher, (0, 1)[:1], freeze_layers=1)
    assert not any(p.requires_grad for p in frozen.encoder.encoder.layer[0].parameters())


@torch.no_grad()
def test_distill_loss_is_zero_kd_when_the_student_is_the_teacher(backbone: Path) -> None:
    """The soft-label KL and the sentence-vector MSE vanish for the teacher itself and grow as the
    student moves away; alpha = 0 leaves the gold-label loss."""
    from model.text import TextEncoder
    from training.data import Example

    teacher = load_model(str(backbone), 0.0, True)
    encoder = TextEncoder.from_file(str(backbone / "tokenizer.json"), max_length=32, prefix="query: ", pad_id=1)
    rows = [Example(str(i), t, "en", i % 5, i % 2, i % 3) for i, t in
            enumerate(["my bill is wrong", "thanks!", "app crashes on login", "where is my parcel??"])]
    targets = teacher_targets(teacher, encoder, rows)
    teacher.eval()
    enc = encoder.encode([r.text for r in rows])
    args = (torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask))
    out = teacher(*args, with_pooled=True)
    labels = (torch.tensor([r.severity for r in rows]), torch.tensor([r.followup for r in rows]),
              torch.tensor([r.sentiment for r in rows]))
    hard = multitask_loss(out[:3], *labels)
    full = DistillLoss(targets, alpha=1.0, beta=1.0)
    kd_self = full(out, range(4), hard)
    # KL and MSE are 0; the follow-up term is the entropy of the teacher's own sigmoid
    p = torch.sigmoid(targets.followup / 2.0)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()).mean() * 4.0
    assert float(kd_self) == pytest.approx(float(entropy), rel=1e-4)
    assert float(DistillLoss(targets, alpha=0.0, beta=0.0)(out, range(4), hard)) == pytest.approx(float(hard))
    teacher.sentiment.bias[0] += 2.0  # a different distribution, not a shift of every logit
    teacher.severity.bias[1] += 2.0
    moved = full(teacher(*args, with_pooled=True), range(4), hard)
    assert float(moved) > float(kd_self) + 1e-3


def _report(**f1: dict[str, float]) -> dict[str, Any]:
    return {"sets": {name: {"model_macro_f1": {k: v for k, v in heads.items() if k != "complaint"},
                            "model": {"severity": {"complaint_macro_f1": heads.get("complaint")}}}
                     for name, heads in f1.items()}}


def test_student_gate_takes_the_worst_head_and_set() -> None:
    teacher = _report(test={"severity": 0.80, "sentiment": 0.90, "private_followup": None, "complaint": 0.9},
                      field={"severity": 0.70, "sentiment": 0.85, "private_followup": 0.9, "complaint": 0.9})
    good = _report(test={"severity": 0.795, "sentiment": 0.91, "private_followup": None, "complaint": 0.9},
                   field={"severity": 0.695, "sentiment": 0.85, "private_followup": 0.9, "complaint": 0.892})
    gate = student_gate(teacher, good, 0.01)
    assert gate["passed"] and gate["worst_drop"] == pytest.approx(0.008)
    assert "private_followup" not in gate["macro_f1"]["test"]  # untrained / unlabeled heads are skipped
    bad = _report(test={"severity": 0.80, "sentiment": 0.90, "private_followup": None, "complaint": 0.9},
                  field={"severity": 0.70, "sentiment": 0.85, "private_followup": 0.88, "complaint": 0.9})
    gate = student_gate(teacher, bad, 0.01)
    assert not gate["passed"] and "field private_followup" in gate["reason"]
    assert not student_gate(teacher, _report(), 0.01)["passed"]


@pytest.mark.parametrize("max_drop", [1.0, 0.0])
def test_teacher_student_build(backbone: Path, tmp_path: Path, max_drop: float) -> None:
    """max_drop 1.0: any student passes and ships, the teacher is kept beside it; max_drop 0.0 with
    a 1-epoch student of a 2-layer teacher: the teacher ships (converted), the student is kept."""
    from training.pipeline import build

    data = write_user_csv(tmp_path / "tweets.csv", 160)
    out = tmp_path / "bundle"
    # the passing build also learns from unlabeled text (user column names do not apply to it)
    unlabeled = tmp_path / "unlabeled.jsonl"
    unlabeled.write_text("".join(json.dumps({"text": f"message {i}: the app {'crashes' if i % 2 else 'works'} "
                                                     f"on screen {i}"}) + "\n" for i in range(30)))
    cfg = tiny_cfg(backbone, data, out, student_layers="1", student_epochs=1, max_student_f1_drop=max_drop,
                   student_unlabeled=str(unlabeled) if max_drop else "")
    assert build(cfg) == out
    meta = read_meta(out)
    dist = meta.metrics["distillation"]
    assert dist["unlabeled"]["rows"] == (30 if max_drop else 0)
    other = out.parent / dist["other_bundle"]
    assert other.is_dir() and read_meta(other).metrics["distillation"]["this_bundle"] != dist["this_bundle"]
    assert dist["layers"] == [1] and dist["teacher_layers"] == 2
    assert set(dist["macro_f1"]) == {"test"} and dist["macro_f1"]["test"]["severity"]["teacher"] >= 0
    layers = {b: read_meta(b).metrics["training"]["encoder_layers"] for b in (out, other)}
    assert dist["passed"] == (max_drop == 1.0), dist["reason"]  # seeded: the 1-layer student loses some F1
    if dist["passed"]:
        assert dist["shipped"] == "student" and layers == {out: 1, other: 2}
        assert other.name == "bundle.teacher"
    else:
        assert dist["shipped"] == "teacher" and layers == {out: 2, other: 1}
        assert other.name == "bundle.student" and dist["worst_drop"] > 0
    assert "conversion" in meta.metrics and (out / "MODEL_CARD.md").is_file()
    assert json.loads((out / "eval_report.json").read_text())["sets"]["test"]["n"] > 0
    # the shipped bundle loads, scores like its own fp32 export would, and is served over HTTP
    scorer = Scorer.load(out)
    probs = scorer.predict(["my internet is down again!!", "thanks, all good"])
    assert np.allclose(probs.severity.sum(1), 1.0)
    results, info = served(out, ["my internet is down again!!"])
    assert results[0]["severity"] in {"none", "low", "medium", "high", "critical"}


def test_unlabeled_rows_load_without_labels_and_drop_evaluation_duplicates(tmp_path: Path) -> None:
    from training.data import MISSING, DataError, Example, drop_overlap, load_unlabeled

    path = tmp_path / "extra.jsonl"
    rows = [{"text": "@AcmeAir where is my bag, 3 days now and nobody answers the phone", "lang": "en",
             "severity": "high"},  # a label column in an unlabeled file is ignored
            {"text": "ok thx"}, {"id": "x7", "text": "Zug fällt schon wieder aus, danke für nix @BahnBeispiel"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    extra = load_unlabeled([path])
    assert [e.id for e in extra] == ["unlabeled-extra-0", "unlabeled-extra-1", "x7"]
    assert all(e.severity == e.followup == e.sentiment == e.complaint == MISSING for e in extra)
    assert extra[0].lang == "en" and extra[1].lang == "und"
    ref = [Example("t1", "@AcmeAir where is my bag?? 3 days now and nobody answers the phone!", "en", 3, 1, 0),
           Example("t2", "OK thx", "en", 0, 0, 1)]
    kept, dropped = drop_overlap(extra, ref)
    assert [e.id for e in kept] == ["x7"] and dropped == 2  # near-duplicate and exact (normalised) duplicate
    path.write_text(json.dumps({"text": "  "}) + "\n")
    with pytest.raises(DataError, match="empty text"):
        load_unlabeled([path])


def test_unlabeled_rows_train_only_on_the_soft_labels(backbone: Path) -> None:
    """A batch of rows without labels: the gold-label loss is exactly zero, the distillation loss
    is not, and its gradient reaches the student's encoder."""
    from model.text import TextEncoder
    from training.data import MISSING, Example

    teacher = load_model(str(backbone), 0.0, True)
    encoder = TextEncoder.from_file(str(backbone / "tokenizer.json"), max_length=32, prefix="query: ", pad_id=1)
    rows = [Example(f"u{i}", t, "und", MISSING, MISSING, MISSING) for i, t in
            enumerate(["STOP", "@AcmeTel internet down since 6am???", "love the new app", "ok"])]
    targets = teacher_targets(teacher, encoder, rows)
    student = make_student(teacher, (1,))
    student.train()
    enc = encoder.encode([r.text for r in rows])
    out = student(torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask), with_pooled=True)
    missing = torch.full((4,), MISSING)
    hard = multitask_loss(out[:3], missing, missing, missing, complaint=missing)
    assert hard.item() == 0.0
    loss = DistillLoss(targets)(out, range(4), hard)
    assert loss.item() > 0
    loss.backward()
    grad = student.encoder.encoder.layer[0].attention.self.query.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0
