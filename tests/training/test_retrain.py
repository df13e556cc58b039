"""Retraining on a user's own data with the tiny backbone: partial labels, label maps, binary
complaint labels, config files, dry runs, warm starts and resumed runs, each ending in a bundle
that the Scorer loads and the HTTP service serves."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from litestar.testing import TestClient

from cli import main as cli_main
from model.bundle import read_meta
from model.scorer import Scorer
from service.api.app import create_app
from service.api.settings import Settings
from tests.conftest import ROOT
from tests.helpers import CONTRACT_FIELDS
from training.config import ColumnMap, TrainConfig
from training.data import MISSING, DataError, load_examples

LEVEL = {"none": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
MOOD = {"negative": "neg", "neutral": "neu", "positive": "pos"}
SEV_MAP = "severity=0:none,1:low,2:medium,3:high,4:critical"
MOOD_MAP = "sentiment=neg:negative,neu:neutral,pos:positive"
COLS = ColumnMap(text="body", id="tweet_id", lang="language", severity="sev", complaint="complaint",
                 sentiment="mood", private_followup="dm")


def corpus_rows(n: int, offset: int = 0) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (ROOT / "data" / "corpus" / "v2-tel.jsonl").open() if line.strip()]
    return rows[offset:offset + n]


def write_user_csv(path: Path, n: int, *, levels: str = "all", offset: int = 0) -> Path:
    """Our corpus rows in a vendor's schema; ``levels``: all (numeric 0-4), none (binary yes/no only),
    half (alternating); never a follow-up column."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["tweet_id", "body", "language", "sev", "complaint", "mood"])
        w.writeheader()
        for i, r in enumerate(corpus_rows(n, offset)):
            level = levels == "all" or (levels == "half" and i % 2 == 0)
            w.writerow({"tweet_id": r["id"], "body": r["text"], "language": r["lang"],
                        "sev": LEVEL[r["severity"]] if level else "",
                        "complaint": "" if level else ("yes" if r["severity"] != "none" else "no"),
                        "mood": MOOD[r["sentiment"]]})
    return path


def tiny_cfg(backbone: Path, data: Path, out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(data=(str(data),), backbone=str(backbone), output_dir=str(out), challenge="",
                                field_set="", epochs=1, batch_size=16, max_length=32, freeze_layers=0, bf16=False,
                                quantize=False, columns=COLS, label_map=(SEV_MAP, MOOD_MAP), time_budget_s=300,
                                # fp32 as trained: these tests are about retraining (and tools.ckpt_from_onnx
                                # reads fp32 weights); the conversion gate has its own tests
                                vocab_trim=0, optimize_graph=False, fuse_attention=False, fp16_weights=False)
    base.update(kw)
    return TrainConfig(**base)


def served(bundle: Path, texts: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Results and /info of the real HTTP app serving ``bundle``."""
    settings = Settings(bundle=bundle, max_batch=8, ort_threads=1)
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/score", json={"messages": [{"text": t} for t in texts]})
        assert r.status_code == 200, r.text
        info = client.get("/info").json()
    return r.json()["results"], info


@pytest.fixture(scope="module")
def numeric_bundle(backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Numeric severity (mapped), sentiment as neg/neu/pos, no follow-up column."""
    from training.pipeline import build

    root = tmp_path_factory.mktemp("numeric")
    data = write_user_csv(root / "tweets.csv", 120)
    return build(tiny_cfg(backbone, data, root / "bundle"))


def test_numeric_severity_with_map_and_a_missing_head(numeric_bundle: Path, tmp_path: Path) -> None:
    meta = read_meta(numeric_bundle)
    assert set(meta.untrained_heads) == {"private_followup"}
    assert "no private_followup labels" in meta.untrained_heads["private_followup"]
    assert (numeric_bundle / "training_history.png").stat().st_size > 1000
    history = meta.metrics["training"]["history"]
    assert [h["epoch"] for h in history] == [1] and history[0]["loss"] > 0 and "severity" in history[0]
    report = json.loads((numeric_bundle / "eval_report.json").read_text())
    test = report["sets"]["test"]
    assert test["model"]["private_followup"]["untrained"] and test["model_macro_f1"]["private_followup"] is None
    assert test["model_macro_f1"]["severity"] is not None  # mapped 0-4 labels were evaluated
    assert (Path(numeric_bundle) / meta.checkpoint / "model.safetensors").is_file()
    results, info = served(numeric_bundle, ["my internet is down again!!", "thanks, all good"])
    assert info["untrained_heads"] == meta.untrained_heads
    for res in results:
        assert set(res) == set(CONTRACT_FIELDS)
        assert res["private_followup"] is None and res["private_followup_probability"] is None
        assert res["severity"] in LEVEL and abs(sum(res["severity_scores"].values()) - 1) < 1e-9
        assert res["sentiment"] in MOOD and not any("follow-up" in r for r in res["priority_reasons"])
    # the batch job writes the same nulls (JSONL and the CSV's empty cells)
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "where is my refund"}) + "\n")
    assert cli_main(["score", "--model", str(numeric_bundle), "--input", str(src), "--output",
                     str(tmp_path / "out.jsonl")]) == 0
    rec = json.loads((tmp_path / "out.jsonl").read_text())
    assert rec["private_followup"] is None and rec["severity"] in LEVEL
    assert cli_main(["score", "--model", str(numeric_bundle), "--input", str(src), "--output",
                     str(tmp_path / "out.parquet")]) == 0


def test_evaluate_a_user_file_with_label_map(numeric_bundle: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = write_user_csv(tmp_path / "eval.csv", 40, levels="half", offset=300)
    out = tmp_path / "m.json"
    assert cli_main(["evaluate", "--model", str(numeric_bundle), "--data", str(data), "--text-col", "body",
                     "--severity-col", "sev", "--complaint-col", "complaint", "--sentiment-col", "mood",
                     "--id-col", "tweet_id", "--label-map", SEV_MAP, MOOD_MAP, "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "40 rows" in text and "complaint (severity != none) n=40" in text and "private_followup: not trained" in text
    metrics = json.loads(out.read_text())
    assert metrics["severity"]["n"] == 20 and metrics["complaint"]["n"] == 40


def test_binary_complaint_only(backbone: Path, tmp_path: Path) -> None:
    from training.pipeline import build

    data = write_user_csv(tmp_path / "binary.csv", 120, levels="none")
    ex = load_examples([data], COLS, (MOOD_MAP,))
    assert all(e.severity == MISSING and e.complaint in (0, 1) for e in ex)
    bundle = build(tiny_cfg(backbone, data, tmp_path / "bundle", label_map=(MOOD_MAP,)))
    meta = read_meta(bundle)
    assert set(meta.untrained_heads) == {"severity_levels", "private_followup"}
    assert 0 < meta.complaint_rate < 1  # from the yes/no labels
    ordinal = meta.metrics["evaluation"]["test"]["severity_ordinal"]
    assert ordinal["complaint_macro_f1"] is not None and ordinal["mae"] is None  # complaint F1 from binary labels
    results, info = served(bundle, ["you double charged me", "love the new plan"])
    assert "severity_levels" in info["untrained_heads"]
    for res in results:
        assert res["severity"] is None and res["severity_scores"] is None
        assert 0 <= res["complaint_probability"] <= 1 and isinstance(res["is_complaint"], bool)
        assert "severity levels not trained" in res["priority_reasons"][0]


@pytest.mark.parametrize("kind", ["soft", "softmax", "corn"])
def test_complaint_loss_raises_p_complaint_for_complaints(kind: str) -> None:
    """The coarse loss works on P(severity != none) for every severity loss: a gradient step on
    yes-rows raises it, on no-rows lowers it, and the split among the four levels is untouched in sum."""
    from training.modeling import complaint_loss, corn_log_probs

    torch.manual_seed(0)
    width = 4 if kind == "corn" else 5
    logits = torch.randn(6, width, requires_grad=True)
    y = torch.tensor([1, 1, 1, 0, 0, 0])

    def p_complaint(z: torch.Tensor) -> torch.Tensor:
        probs = corn_log_probs(z).exp() if kind == "corn" else z.softmax(1)
        return 1 - probs[:, 0]

    before = p_complaint(logits).detach()
    complaint_loss(logits, y, kind).backward()
    after = p_complaint((logits - 0.5 * logits.grad).detach())
    assert (after[:3] > before[:3]).all() and (after[3:] < before[3:]).all()


def test_mixed_rows_and_weights_in_the_multitask_loss() -> None:
    from training.modeling import multitask_loss

    torch.manual_seed(1)
    out = (torch.randn(4, 5), torch.randn(4, 1), torch.randn(4, 3))
    sev, fol, sen = torch.tensor([2, -1, -1, 0]), torch.full((4,), -1), torch.full((4,), -1)
    comp = torch.tensor([-1, 1, 0, -1])
    plain = multitask_loss(out, sev, fol, sen, kind="soft", complaint=comp)
    no_coarse = multitask_loss(out, sev, fol, sen, kind="soft")
    assert plain != no_coarse  # the yes/no rows contribute
    heavy = multitask_loss(out, sev, fol, sen, kind="soft", complaint=comp,
                           row_weights=torch.tensor([1.0, 5.0, 5.0, 1.0]))
    assert heavy != plain
    same = multitask_loss(out, sev, fol, sen, kind="soft", complaint=comp, row_weights=torch.full((4,), 3.0))
    assert torch.isclose(same, plain)  # uniform weights change nothing


def test_contradicting_and_bad_binary_labels_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "x", "severity": "none", "is_complaint": 1}) + "\n")
    with pytest.raises(DataError, match="contradicts severity 'none'"):
        load_examples([path])
    path.write_text(json.dumps({"text": "x", "is_complaint": "maybe"}) + "\n")
    with pytest.raises(DataError, match="is_complaint must be true/false"):
        load_examples([path])


def test_toml_label_map_equals_inline(tmp_path: Path) -> None:
    data = write_user_csv(tmp_path / "t.csv", 30, levels="half")
    toml = tmp_path / "labels.toml"
    toml.write_text('[severity]\n0 = "none"\n1 = "low"\n2 = "medium"\n3 = "high"\n4 = "critical"\n\n'
                    '[sentiment]\nneg = "negative"\nneu = "neutral"\npos = "positive"\n')
    assert load_examples([data], COLS, (str(toml),)) == load_examples([data], COLS, (SEV_MAP, MOOD_MAP))
    toml.write_text('[severity]\n0 = "nothing"\n')
    with pytest.raises(DataError, match="TO one of"):
        load_examples([data], COLS, (str(toml),))
    toml.write_text("[severity\n")
    with pytest.raises(DataError, match="not valid TOML"):
        load_examples([data], COLS, (str(toml),))


def test_config_file_equals_flags_and_flags_win(tmp_path: Path) -> None:
    import argparse

    from training.config import add_config_args, config_from_args

    parser = argparse.ArgumentParser()
    add_config_args(parser)
    flags = ["--data", "a.csv", "--epochs", "2", "--bf16", "false", "--loss-weights", "1", "2", "1",
             "--label-map", SEV_MAP, "--text-col", "body", "--learning-rate", "3e-05"]
    toml = tmp_path / "train.toml"
    toml.write_text(f'data = ["a.csv"]\nepochs = 2\nbf16 = false\nloss-weights = [1, 2, 1]\nlabel_map = ["{SEV_MAP}"]\n'
                    'learning_rate = 3e-5\n[columns]\ntext = "body"\n')
    from_file = config_from_args(parser.parse_args(["--config", str(toml)]))
    assert from_file == config_from_args(parser.parse_args(flags))
    assert config_from_args(parser.parse_args(["--config", str(toml), "--epochs", "5"])).epochs == 5
    toml.write_text("epochz = 2\n")
    with pytest.raises(ValueError, match="unknown key 'epochz'"):
        config_from_args(parser.parse_args(["--config", str(toml)]))
    toml.write_text('epochs = "two"\n')
    with pytest.raises(ValueError, match="wrong type"):
        config_from_args(parser.parse_args(["--config", str(toml)]))
    assert cli_main(["train", "--config", str(toml)]) == 2  # a clear error, no training


def test_dry_run_counts_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_user_csv(tmp_path / "d.csv", 60, levels="half")
    args = ["train", "--dry-run", "--data", str(data), "--text-col", "body", "--id-col", "tweet_id",
            "--severity-col", "sev", "--complaint-col", "complaint", "--sentiment-col", "mood",
            "--output-dir", str(tmp_path / "never")]
    assert cli_main([*args, "--label-map", SEV_MAP, MOOD_MAP]) == 0
    out = capsys.readouterr().out
    assert "60 usable rows" in out and "head private_followup: NOT trained" in out and "rows rejected: 0" in out
    assert "is_complaint (binary only)" in out and "head severity: trained" in out
    assert not (tmp_path / "never").exists()
    assert cli_main(args) == 2  # without the map, 0-4 and neg/neu/pos are unknown labels
    out = capsys.readouterr().out
    assert "rows rejected: 60" in out and "unknown severity" in out


def test_with_default_corpus_trains_every_head(tmp_path: Path) -> None:
    from training.sources import head_status, load_training_data

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus_rows(30, 500)))
    data = write_user_csv(tmp_path / "u.csv", 20, levels="none")
    cfg = TrainConfig(data=(str(data),), columns=COLS, label_map=(MOOD_MAP,), with_default_corpus=True,
                      default_corpus=str(corpus), user_weight=3.0)
    ex = load_training_data(cfg)
    assert len(ex) == 50 and sorted({e.weight for e in ex}) == [1.0, 3.0]
    assert head_status(ex) == {}
    assert set(head_status(load_training_data(dataclasses.replace(cfg, with_default_corpus=False)))) == \
        {"severity_levels", "private_followup"}


def test_init_from_bundle_or_checkpoint_loads_its_weights(numeric_bundle: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from training.pipeline import _model

    meta = read_meta(numeric_bundle)
    ckpt = (numeric_bundle / meta.checkpoint).resolve()
    saved = load_file(str(ckpt / "model.safetensors"))
    assert "severity.weight" in saved and any(k.startswith("encoder.encoder.layer") for k in saved)
    for source in (numeric_bundle, ckpt):
        cfg = TrainConfig(data=("x",), init_from=str(source), freeze_layers=0)
        _, model, changed, init = _model(cfg)
        state = model.state_dict()
        assert init["checkpoint"] == str(ckpt) and set(saved) <= changed
        for k, v in saved.items():
            torch.testing.assert_close(state[k].float(), v)
    with pytest.raises(DataError, match="neither a checkpoint"):
        _model(TrainConfig(data=("x",), init_from=str(tmp_path)))
    with pytest.raises(DataError, match="does not fit"):
        _model(TrainConfig(data=("x",), init_from=str(ckpt), severity_loss="corn", freeze_layers=0))


def test_warm_start_trains_and_serves(backbone: Path, numeric_bundle: Path, tmp_path: Path) -> None:
    from training.pipeline import build

    data = write_user_csv(tmp_path / "few.csv", 60, offset=200)
    bundle = build(tiny_cfg(backbone, data, tmp_path / "warm", init_from=str(numeric_bundle)))
    meta = read_meta(bundle)
    assert meta.metrics["training"]["init_from"]["checkpoint"].endswith(".ckpt")
    assert Scorer.load(bundle).predict(["hello"]).severity.shape == (1, 5)
    results, info = served(bundle, ["hello", "my line is dead"])
    assert set(info["untrained_heads"]) == {"private_followup"} and results[1]["severity"] in LEVEL


class Interrupt(Exception):
    """Stands for Ctrl-C / a killed job after the first epoch's checkpoint."""


def test_resumed_run_equals_uninterrupted(backbone: Path, tmp_path: Path) -> None:
    from training.pipeline import build

    data = write_user_csv(tmp_path / "r.csv", 70, levels="half")
    full = build(tiny_cfg(backbone, data, tmp_path / "full", epochs=2, patience=5))
    cfg = tiny_cfg(backbone, data, tmp_path / "cut", epochs=2, patience=5)

    def stop(epoch: int, _result: Any) -> None:
        raise Interrupt(f"after epoch {epoch}")

    with pytest.raises(Interrupt):
        build(cfg, on_epoch_end=stop)
    assert not (tmp_path / "cut").exists() and (cfg.ckpt / "resume.pt").is_file()
    with pytest.raises(DataError, match="different config"):
        build(dataclasses.replace(cfg, resume=True, learning_rate=1e-3))
    resumed = build(dataclasses.replace(cfg, resume=True))
    a, b = read_meta(full), read_meta(resumed)
    ta, tb = a.metrics["training"], b.metrics["training"]
    assert (ta["steps"], ta["epochs_run"], ta["best_epoch"]) == (tb["steps"], tb["epochs_run"], tb["best_epoch"])
    assert ta["epochs_run"] == 2 and ta["steps"] == 2 * ta["history"][0]["steps"] > 0
    assert tb["resumed"] is True
    for ha, hb in zip(ta["history"], tb["history"], strict=True):
        assert ha.keys() == hb.keys()
        np.testing.assert_allclose([ha[k] for k in ha], [hb[k] for k in hb], rtol=1e-5)
    ignore = {"output_dir", "resume"}
    assert {k: v for k, v in a.training_config.items() if k not in ignore} == \
        {k: v for k, v in b.training_config.items() if k not in ignore}
    pa, pb = Scorer.load(full).predict(["my bill is wrong"]), Scorer.load(resumed).predict(["my bill is wrong"])
    np.testing.assert_allclose(pa.severity, pb.severity, atol=1e-5)
    results, _ = served(resumed, ["my bill is wrong"])
    assert results[0]["severity"] in LEVEL


def test_checkpoint_recovered_from_an_fp32_bundle_equals_the_saved_one(numeric_bundle: Path, tmp_path: Path) -> None:
    """tools/ckpt_from_onnx: the torch weights read back from model.onnx are the trained ones."""
    from safetensors.torch import load_file

    from tools.ckpt_from_onnx import recover

    diff = recover(numeric_bundle, tmp_path / "rec.ckpt", ["my bill is wrong", "thanks!", "no signal since monday"])
    assert diff <= 1e-4
    saved = load_file(str(numeric_bundle / read_meta(numeric_bundle).checkpoint / "model.safetensors"))
    recovered = load_file(str(tmp_path / "rec.ckpt" / "model.safetensors"))
    assert set(saved) <= set(recovered)
    for k, v in saved.items():
        torch.testing.assert_close(recovered[k], v)
