"""Vocabulary trim on the tiny bundle: kept pieces score bit-for-bit as before, dropped ones do not."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from model.scorer import Scorer
from tests.helpers import copy_bundle
from training.vocab import (
    VocabTrimError,
    choose_kept,
    in_scripts,
    outside_share,
    trim_onnx,
    unigram_pieces,
)

KEPT_TEXTS = ["my parcel never arrived", "thanks, works again", "Mein Paket ist nicht da"]
OTHER_TEXTS = ["Посылка не пришла уже неделю", "荷物がまだ届きません"]


@pytest.fixture(scope="module")
def trimmed(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from model.bundle import MODEL_FILE, file_sha256, read_meta, write_meta

    ref = Scorer.load(tiny_bundle, intra_op_threads=1)
    train_ids, _ = ref.encoder.token_ids(KEPT_TEXTS)
    kept = choose_kept(unigram_pieces(tiny_bundle / "tokenizer.json"), train_ids, 3000)
    out = copy_bundle(tiny_bundle, tmp_path_factory.mktemp("trim") / "b")
    trim_onnx(tiny_bundle / MODEL_FILE, out / MODEL_FILE, kept)
    import dataclasses

    meta = read_meta(out)
    write_meta(out, dataclasses.replace(meta, files={**meta.files, MODEL_FILE: file_sha256(out / MODEL_FILE)}))
    return out, kept


def test_kept_pieces_score_bit_identical(tiny_bundle: Path, trimmed: tuple[Path, object]) -> None:
    ref = Scorer.load(tiny_bundle, intra_op_threads=1)
    cand = Scorer.load(trimmed[0], intra_op_threads=1)
    for a, b in zip(ref.logits(KEPT_TEXTS), cand.logits(KEPT_TEXTS)):
        assert np.array_equal(a, b)


def test_dropped_pieces_change_the_output(tiny_bundle: Path, trimmed: tuple[Path, object]) -> None:
    ref = Scorer.load(tiny_bundle, intra_op_threads=1)
    cand = Scorer.load(trimmed[0], intra_op_threads=1)
    ids, _ = ref.encoder.token_ids(OTHER_TEXTS)
    assert outside_share(trimmed[1], ids)["tokens"] > 0.3  # type: ignore[arg-type]
    assert not np.array_equal(ref.logits(OTHER_TEXTS)[0], cand.logits(OTHER_TEXTS)[0])


def test_trimmed_model_is_smaller(tiny_bundle: Path, trimmed: tuple[Path, object]) -> None:
    small = (trimmed[0] / "model.onnx").stat().st_size
    assert small < 0.1 * (tiny_bundle / "model.onnx").stat().st_size


def test_choice_follows_the_rules(tiny_bundle: Path) -> None:
    pieces = unigram_pieces(tiny_bundle / "tokenizer.json")
    kept = choose_kept(pieces, [[0, 5000, 5000, 7000, 2]], 3000)
    ids = set(kept.ids.tolist())
    assert {0, 1, 2, 3, 5000, 7000} <= ids and len(ids) == 3000
    assert all(in_scripts(pieces[i][0], ["LATIN"]) or len(pieces[i][0].replace("▁", "")) == 1
               for i in ids - {5000, 7000})
    table = kept.old_to_new(250037)
    assert table[7000] == int(np.searchsorted(kept.ids, 7000)) and table[249000] == table[3]


def test_script_of_pieces() -> None:
    assert in_scripts("▁Rückerstattung", ["LATIN"]) and in_scripts("👍!", ["LATIN"])
    assert not in_scripts("▁посылка", ["LATIN"])


def test_bad_inputs_raise_clear_errors(tmp_path: Path, tiny_bundle: Path) -> None:
    pieces = unigram_pieces(tiny_bundle / "tokenizer.json")
    with pytest.raises(VocabTrimError, match="too small"):
        choose_kept(pieces, [], 2)
    bad = tmp_path / "tok.json"
    bad.write_text('{"model": {"type": "BPE", "vocab": {}}}')
    with pytest.raises(VocabTrimError, match="Unigram"):
        unigram_pieces(bad)
    shutil.copy(tiny_bundle / "model.onnx", tmp_path / "m.onnx")
    kept = choose_kept(pieces, [], 100)
    object.__setattr__(kept, "ids", np.append(kept.ids, 10**6))
    with pytest.raises(VocabTrimError, match="outside"):
        trim_onnx(tmp_path / "m.onnx", tmp_path / "out.onnx", kept)


def test_int8_tail_is_close_and_kept_stay_exact(tiny_bundle: Path, tmp_path: Path) -> None:
    from training.vocab import tail_ids

    ref = Scorer.load(tiny_bundle, intra_op_threads=1)
    pieces = unigram_pieces(tiny_bundle / "tokenizer.json")
    kept = choose_kept(pieces, ref.encoder.token_ids(KEPT_TEXTS)[0], 3000)
    out = copy_bundle(tiny_bundle, tmp_path / "b")
    info = trim_onnx(tiny_bundle / "model.onnx", out / "model.onnx", kept, tail_ids(pieces, kept, ["LATIN"]))
    assert info["tail_int8_rows"] > 50_000
    cand = Scorer.load(out, intra_op_threads=1, verify=False)
    for a, b in zip(ref.logits(KEPT_TEXTS), cand.logits(KEPT_TEXTS)):
        assert np.array_equal(a, b)
    latin = ["Rückerstattungsantrag abgelehnt, unverschämt", "reembolsado parcialmente"]
    assert outside_share(kept, ref.encoder.token_ids(latin)[0])["tokens"] > 0
    for a, b in zip(ref.logits(latin)[:3], cand.logits(latin)[:3]):
        assert not np.array_equal(a, b)
        np.testing.assert_allclose(a, b, atol=0.05)


def test_tokenizer_trim_keeps_ids_of_served_texts(tiny_bundle: Path, tmp_path: Path) -> None:
    from model.text import TextEncoder
    from training.vocab import trim_tokenizer

    info = trim_tokenizer(tiny_bundle / "tokenizer.json", tmp_path / "tok.json", ["LATIN"])
    assert info["pieces"] == 250002 and info["placeholders"] > 100_000
    ref, new = (TextEncoder.from_file(str(p), max_length=64, prefix="query: ", pad_id=1)
                for p in (tiny_bundle / "tokenizer.json", tmp_path / "tok.json"))
    served = [*KEPT_TEXTS, "Rückerstattung, ¿dónde? ⚠️ 👍 Zażółć gęślą jaźń, çok kötü", "a\x00b"]
    assert ref.token_ids(served) == new.token_ids(served)
    assert ref.token_ids(OTHER_TEXTS)[0] != new.token_ids(OTHER_TEXTS)[0]
    assert new.tokenizer.get_vocab_size() == ref.tokenizer.get_vocab_size()


def test_served_table_makes_trim_and_fp16_exact(tiny_bundle: Path, tmp_path: Path) -> None:
    """A model whose word table already holds ``served_table``'s rows converts (trim with an int8
    tail, then fp16 storage) to a graph that scores every text bit-identically, rare pieces included;
    the same conversion of the unpinned model does not."""
    import onnx
    from onnx import numpy_helper

    from training.optimize import fp16_storage
    from training.vocab import _word_embedding_gather, served_table, tail_ids

    ref = Scorer.load(tiny_bundle, intra_op_threads=1)
    pieces = unigram_pieces(tiny_bundle / "tokenizer.json")
    kept = choose_kept(pieces, ref.encoder.token_ids(KEPT_TEXTS)[0], 3000)
    tail = tail_ids(pieces, kept, ["LATIN"])
    texts = [*KEPT_TEXTS, *OTHER_TEXTS, "Rückerstattungsantrag abgelehnt, unverschämt", "reembolsado parcialmente"]
    model = onnx.load(str(tiny_bundle / "model.onnx"))
    _, weight = _word_embedding_gather(model.graph)
    table = numpy_helper.to_array(weight)
    served = served_table(table, kept, tail, fp16_min_elements=40_000)
    assert np.array_equal(served_table(served, kept, tail, fp16_min_elements=40_000), served)  # idempotent
    for name, pin in (("pinned", True), ("plain", False)):
        src = copy_bundle(tiny_bundle, tmp_path / name)
        if pin:
            weight.CopyFrom(numpy_helper.from_array(served, weight.name))
            onnx.save(model, str(src / "model.onnx"))
        before = Scorer.load(src, intra_op_threads=1, verify=False).logits(texts)
        trim_onnx(src / "model.onnx", tmp_path / f"{name}.trim.onnx", kept, tail)
        info = fp16_storage(tmp_path / f"{name}.trim.onnx", src / "model.onnx", min_elements=40_000)
        assert info["fp16_tensors"] == 2  # the kept table and the tail scales (hidden 32)
        after = Scorer.load(src, intra_op_threads=1, verify=False).logits(texts)
        same = all(np.array_equal(a, b) for a, b in zip(before, after))
        assert same == pin, name
