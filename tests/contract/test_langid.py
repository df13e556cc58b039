"""Hypothesis properties of language identification: total, fast, linear in the text."""

from __future__ import annotations

import re
import time

from hypothesis import given
from hypothesis import strategies as st

from service.contract.langid import detect_language
from tests.strategies import PROPS, TEXTS, WORDY


# ----------------------------------------------------------------------------- language id
@PROPS
@given(text=st.one_of(TEXTS, WORDY, st.text(st.sampled_from("ab@.# \u0634"), min_size=1000, max_size=20_000)))
def test_detect_language_is_fast_and_total(text: str) -> None:
    detect_language("warm up: load the identifier model")
    t0 = time.perf_counter()
    lang = detect_language(text)
    assert time.perf_counter() - t0 < 0.2  # linear in the text (the old e-mail regex was quadratic)
    assert lang == "und" or re.fullmatch(r"[a-z]{2,3}", lang)


def test_detect_language_long_token_without_at_is_linear() -> None:
    for text in ("a" * 40_000, "\u0634" * 40_000, "x." * 20_000, "#" + "a" * 40_000):
        t0 = time.perf_counter()
        detect_language(text)
        assert time.perf_counter() - t0 < 0.1, text[:5]
