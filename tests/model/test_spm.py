"""The sentencepiece backend (model/spm.py) gives the Hugging Face tokenizer's ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model import spm
from model.text import TextEncoder
from tests.helpers import real_tokenizer_json

ROOT = Path(__file__).resolve().parents[2]
HARD = [
    "", " ", "x", "a  b\t\tc\n\nd", "  leading and trailing  ", "ﬁ ① ＡＢＣ ｶﾀｶﾅ", "café café cafe\u0301",
    "日本語のテキスト 😀😀 👍🏽 🇩🇪🇫🇷", "Привет мир, посылка не пришла", "مرحبا، أين طلبي؟", "Zażółć gęślą jaźń",
    "@AcmeAir #fail https://t.co/x1Y2z3 order #A-99812 at 10:45pm!!!", "word " * 300, "<unused-12> hi",
    "çok kötü bir deneyim 😡 iade istiyorum", "¿dónde está mi reembolso?", "123 456,78 € / $9.99",
]


def _encoders(path: Path) -> tuple[TextEncoder, TextEncoder]:
    return (TextEncoder.from_file(str(path), max_length=512, prefix="query: ", pad_id=1, backend="tokenizers"),
            TextEncoder.from_file(str(path), max_length=512, prefix="query: ", pad_id=1, backend="sentencepiece"))


def _data_texts() -> list[str]:
    texts = []
    for path in sorted((ROOT / "data").glob("**/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if isinstance(row.get("text"), str):
                texts.append(row["text"])
    return texts


def test_same_ids_as_tokenizers_on_hard_texts() -> None:
    hf, sp = _encoders(real_tokenizer_json())
    assert sp.backend == "sentencepiece" and hf.backend == "tokenizers"
    assert sp.token_ids(HARD) == hf.token_ids(HARD)
    assert sp.tokenizer.get_vocab_size() == hf.tokenizer.get_vocab_size()
    # a request's few texts take one call each (spm.SMALL_BATCH), big lists the batch API: same ids
    assert len(HARD) > spm.SMALL_BATCH
    one_by_one = [row for i in range(0, len(HARD), 3) for row in sp.token_ids(HARD[i:i + 3])[0]]
    assert one_by_one == sp.token_ids(HARD)[0]


def test_same_ids_as_tokenizers_on_every_data_text() -> None:
    texts = _data_texts()
    assert len(texts) > 20_000
    hf, sp = _encoders(real_tokenizer_json())
    a, b = hf.token_ids(texts)[0], sp.token_ids(texts)[0]
    differ = [t for t, x, y in zip(texts, a, b) if x != y]
    # one known tie: two segmentations of equal score ("…mmm" as m+mm or mm+m), picked differently
    assert len(differ) <= 2, differ[:5]


def test_trimmed_tokenizer_placeholders_keep_ids(tmp_path: Path) -> None:
    from training.vocab import trim_tokenizer

    trim_tokenizer(real_tokenizer_json(), tmp_path / "tok.json", ["LATIN"])
    hf, sp = _encoders(tmp_path / "tok.json")
    texts = [*HARD, "Посылка не пришла уже неделю", "荷物がまだ届きません"]
    assert sp.token_ids(texts) == hf.token_ids(texts)


def test_special_tokens_typed_in_a_message_are_plain_text() -> None:
    _, sp = _encoders(real_tokenizer_json())
    row = sp.token_ids(["<s> </s> <mask>"])[0][0]
    assert row[0] == 0 and row[-1] == 2 and 0 not in row[1:-1] and 2 not in row[1:-1] and 250001 not in row


def test_unconvertible_tokenizers_fall_back_or_fail_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = json.loads(real_tokenizer_json().read_text(encoding="utf-8"))
    assert spm.convertible(data) is None
    wordpiece = {**data, "model": {"type": "WordPiece", "vocab": {"[UNK]": 0}}}
    assert "Unigram" in str(spm.convertible(wordpiece))
    assert "normalizer" in str(spm.convertible({**data, "normalizer": {"type": "NFKC"}}))
    assert "pre-tokenizer" in str(spm.convertible({**data, "pre_tokenizer": {"type": "Whitespace"}}))
    assert "post-processor" in str(spm.convertible({**data, "post_processor": None}))
    bad = tmp_path / "tok.json"
    bad.write_text(json.dumps({**data, "pre_tokenizer": {"type": "Whitespace"}}), encoding="utf-8")
    assert TextEncoder.from_file(str(bad), max_length=32, prefix="", pad_id=1).backend == "tokenizers"
    with pytest.raises(ValueError, match="pre-tokenizer"):
        TextEncoder.from_file(str(bad), max_length=32, prefix="", pad_id=1, backend="sentencepiece")
    monkeypatch.setenv("CT_TOKENIZER", "fast")
    with pytest.raises(ValueError, match="CT_TOKENIZER"):
        TextEncoder.from_file(str(real_tokenizer_json()), max_length=32, prefix="", pad_id=1)
    monkeypatch.setenv("CT_TOKENIZER", "tokenizers")
    assert TextEncoder.from_file(str(real_tokenizer_json()), max_length=32, prefix="", pad_id=1).backend == "tokenizers"


def test_a_tokenizer_is_built_once_per_content(tmp_path: Path) -> None:
    """The same ``tokenizer.json`` bytes (another bundle's copy) reuse the built backend; other bytes
    build their own, with their own ids."""
    src = real_tokenizer_json()
    copy = tmp_path / "a" / "tokenizer.json"
    copy.parent.mkdir()
    copy.write_bytes(src.read_bytes())
    first = spm.load(src)
    assert spm.load(copy) is first
    data = json.loads(src.read_text(encoding="utf-8"))
    data["model"]["vocab"][1000] = ["\u0000", 0.0]  # a trim placeholder: that id is never produced
    piece = json.loads(src.read_text(encoding="utf-8"))["model"]["vocab"][1000][0]
    changed = tmp_path / "b" / "tokenizer.json"
    changed.parent.mkdir()
    changed.write_text(json.dumps(data), encoding="utf-8")
    other = spm.load(changed)
    assert other is not first and spm.load(changed) is other
    text = piece.replace("\u2581", " ").strip()
    assert 1000 in first.encode_ids([text])[0] and 1000 not in other.encode_ids([text])[0]
