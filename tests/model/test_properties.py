"""Hypothesis properties of the text path and the ONNX scorer: normalisation, tokenisation, probabilities.

Scores are deterministic, softmax heads sum to 1, every probability is in [0, 1], and a text's
scores do not depend on its batch mates.
"""

from __future__ import annotations

import re
import time

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from model.scorer import Scorer
from model.text import normalize_text
from tests.strategies import PROPS, TEXTS, WORDY, check_probabilities

# ----------------------------------------------------------------------------- normalisation
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u200b-\u200d\u2060\ufeff]")


@PROPS
@given(text=TEXTS)
@example(text="\ud800")
@example(text="a\x00b\u200bc\u0301")
def test_normalize_text_is_clean_and_deterministic(text: str) -> None:
    out = normalize_text(text)
    assert out == normalize_text(text)
    assert not _FORBIDDEN.search(out), repr(out)  # no control, zero-width or surrogate characters
    assert out == out.strip() and "  " not in out and not re.search(r"\s\s", out)
    out.encode("utf-8")  # always encodable (lone surrogates are gone)
    assert len(out) <= 3 * len(text)  # NFC expands a character to at most 3 (e.g. U+FB2C)


# ----------------------------------------------------------------------------- tokenisation
@PROPS
@given(texts=st.lists(st.one_of(TEXTS, WORDY), min_size=1, max_size=6))
def test_token_ids_are_bounded_and_batch_independent(scorer: Scorer, texts: list[str]) -> None:
    enc = scorer.encoder
    ids, truncated = enc.token_ids(texts)
    vocab = enc.tokenizer.get_vocab_size()
    for row, cut, text in zip(ids, truncated, texts):
        assert 2 <= len(row) <= enc.max_length
        assert row[0] == 0 and row[-1] == 2  # <s> ... </s> survive truncation
        assert all(0 <= i < vocab for i in row)
        assert (row, cut) == tuple(x[0] for x in enc.token_ids([text]))  # same alone as in a batch
    padded = enc.pad(ids, truncated)
    assert padded.attention_mask.sum(axis=1).tolist() == [len(r) for r in ids]
    assert (padded.input_ids[padded.attention_mask == 0] == enc.pad_id).all()


# ----------------------------------------------------------------------------- scorer
@PROPS
@given(texts=st.lists(st.one_of(TEXTS, WORDY), min_size=1, max_size=8), batch=st.integers(1, 8))
def test_scorer_probabilities_are_valid_deterministic_and_batch_independent(
        scorer: Scorer, texts: list[str], batch: int) -> None:
    p = scorer.predict(texts, batch_size=batch)
    assert p.severity.shape == (len(texts), 5) and p.sentiment.shape == (len(texts), 3) and len(p) == len(texts)
    check_probabilities(p.severity, p.followup, p.sentiment)
    again = scorer.predict(texts, batch_size=batch)
    assert np.array_equal(p.severity, again.severity) and np.array_equal(p.followup, again.followup)
    alone = scorer.predict(texts[:1])  # padding and batch mates do not change a text's scores
    assert np.allclose(alone.severity[0], p.severity[0], atol=1e-5)
    assert np.allclose(alone.sentiment[0], p.sentiment[0], atol=1e-5)
    assert abs(alone.followup[0] - p.followup[0]) < 1e-5


def test_scorer_handles_empty_batch_and_megabyte_text(scorer: Scorer) -> None:
    assert len(scorer.predict([])) == 0
    huge = ("ärger mit der Lieferung 😡 " * 45_000)[: 1 << 20]
    t0 = time.perf_counter()
    p = scorer.predict([huge, "ok"])
    assert time.perf_counter() - t0 < 10
    assert p.truncated.tolist() == [True, False]
    check_probabilities(p.severity, p.followup, p.sentiment)
