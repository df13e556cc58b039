"""Hypothesis settings and text strategies shared by the property tests (tests/model, tests/contract, tests/api).

Any Unicode text (emoji, RTL, zero-width, combining marks, NUL/control characters, lone surrogates,
1 MB texts). ``CT_PROP_EXAMPLES`` (default 40) sets the examples per property.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("CT_PROP_EXAMPLES", "40"))  # raise for a longer local run
PROPS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=EXAMPLES <= 100,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# characters that break naive text handling, mixed into arbitrary Unicode
NASTY = [
    "\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9f", "\t", "\n", "\r", "\x0b", "\x0c", "\u2028", "\u2029",
    "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00a0", "\u3000", "\u1680",  # zero-width and odd spaces
    "\u0301", "\u0308", "\u0327", "\u20dd", "\u0e49",  # combining marks
    "\u202e", "\u202b", "\u200f", "\u2066", "\u2069",  # bidi controls
    "مرحبا", "שלום", "سلام عليكم", "👍", "🤬", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇩🇪", "\U0010fffd", "\ue000",
    "Z̴̡̧̛a̸̢̛l̷g̵o̴", "e\u0301", "ﷺ", "ẞ", "İ", "ﬁ", "Ⅻ", "㍿", "\ufffd", "\ufffe",
    "\ud800", "\udfff", "\ud83d", "\ude00",  # lone surrogates (valid in a Python str, not in UTF-8)
]
ANY_CHAR = st.characters(exclude_categories=())  # every code point, surrogates included
TEXTS = st.lists(st.one_of(st.sampled_from(NASTY), st.text(ANY_CHAR, max_size=20)), max_size=12).map("".join)
WORDY = st.lists(st.one_of(st.sampled_from(NASTY), st.sampled_from(["my bag", "never", "arrived", "refund",
                 "merci", "kündige", "¿dónde?", "#fail", "@Sky", "bob@x.io", "https://t.co/x"]),
                 st.text(ANY_CHAR, max_size=8)), min_size=1, max_size=40).map(" ".join)


def lone_surrogates(text: str) -> bool:
    """True if ``text`` still holds an unpaired surrogate once adjacent high+low halves are paired."""
    try:
        text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        return True
    return False


def check_probabilities(sev: np.ndarray, fol: np.ndarray, sen: np.ndarray) -> None:
    for arr in (sev, fol, sen):
        assert np.isfinite(arr).all() and (arr >= 0).all() and (arr <= 1).all()
    assert np.allclose(sev.sum(axis=1), 1.0, atol=1e-9) and np.allclose(sen.sum(axis=1), 1.0, atol=1e-9)
