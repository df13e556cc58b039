"""Hypothesis properties of the text path: normalisation, tokenisation, the ONNX scorer and the HTTP API.

Any Unicode text (emoji, RTL, zero-width, combining marks, NUL/control characters, lone surrogates,
1 MB texts) either scores or is refused with a clear 4xx JSON; scores are deterministic, softmax heads
sum to 1 and every probability is in [0, 1]. ``CT_PROP_EXAMPLES`` (default 40) sets the examples per property.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from model.scorer import Scorer
from model.text import normalize_text
from service.api.app import TEXT_PATTERN, create_app
from service.api.settings import Settings
from service.contract.langid import detect_language

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
def check_probabilities(sev: np.ndarray, fol: np.ndarray, sen: np.ndarray) -> None:
    for arr in (sev, fol, sen):
        assert np.isfinite(arr).all() and (arr >= 0).all() and (arr <= 1).all()
    assert np.allclose(sev.sum(axis=1), 1.0, atol=1e-9) and np.allclose(sen.sum(axis=1), 1.0, atol=1e-9)


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


# ----------------------------------------------------------------------------- HTTP API
LIMITS = Settings(max_messages=16, max_text_chars=20_000, max_body_bytes=4 * 1024 * 1024, max_batch=8,
                  max_queue=64, ort_threads=1)


@pytest.fixture(scope="module")
def client(tiny_bundle: Path) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(Settings(**{**LIMITS.__dict__, "bundle": tiny_bundle}))) as c:
        yield c


@pytest.fixture(scope="module")
def roomy_client(tiny_bundle: Path) -> Iterator[TestClient[Any]]:
    """Limits raised so that a 1 MB text is allowed through to the model."""
    roomy = Settings(bundle=tiny_bundle, max_messages=4, max_text_chars=2_000_000, max_body_bytes=16 * 1024 * 1024,
                     max_batch=4, max_queue=16, ort_threads=1)
    with TestClient(create_app(roomy)) as c:
        yield c


def post_raw(client: TestClient[Any], body: bytes) -> Any:
    return client.post("/v1/score", content=body, headers={"content-type": "application/json"})


def check_result(res: dict[str, Any]) -> None:
    sev, sen = list(res["severity_scores"].values()), list(res["sentiment_scores"].values())
    check_probabilities(np.array([sev]), np.array([res["private_followup_probability"]]), np.array([sen]))
    assert 0 <= res["complaint_probability"] <= 1 and 0 <= res["priority"] <= 100
    assert res["severity"] == max(res["severity_scores"], key=res["severity_scores"].get)


def check_error(r: Any, status: int, needle: str = "") -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status_code"] == status and body["detail"], body
    assert needle in body["detail"], body


FIXED_TIME = "2026-03-04T10:00:00+00:00"  # created_at given, so priority does not depend on the clock


@PROPS
@given(texts=st.lists(st.one_of(TEXTS, WORDY), min_size=1, max_size=5))
@example(texts=["\ud800"])
@example(texts=["ok", "a\udc00b"])
@example(texts=["\ud83d\ude00 surrogate pair sent as two escapes"])
@example(texts=["\x00"])
@example(texts=["\u200b\u200b"])
@example(texts=[" \x1c\x1d\x1e\x1f\x85 "])
def test_any_unicode_scores_or_gets_a_clear_4xx(client: TestClient[Any], texts: list[str]) -> None:
    msgs = [{"text": t, "id": str(i), "created_at": FIXED_TIME} for i, t in enumerate(texts)]
    # ensure_ascii: every non-ASCII character travels as a \\uXXXX escape, lone surrogates included
    body = json.dumps({"messages": msgs}, ensure_ascii=True).encode()
    r = post_raw(client, body)
    if any(lone_surrogates(t) for t in texts):
        check_error(r, 400, "not valid JSON")
        return
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        check_error(r, 400, f"messages[{blank[0]}].text is empty")
        return
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["id"] for x in results] == [m["id"] for m in msgs]
    for res in results:
        check_result(res)
    assert post_raw(client, body).json()["results"] == results  # deterministic
    # the same texts sent as raw UTF-8 (not escaped) score the same
    paired = [{**m, "text": m["text"].encode("utf-16", "surrogatepass").decode("utf-16")} for m in msgs]
    utf8 = json.dumps({"messages": paired}, ensure_ascii=False).encode("utf-8")
    assert post_raw(client, utf8).json()["results"] == results


@PROPS
@given(data=st.binary(max_size=300))
@example(data=b'{"messages": [{"text": "\xff\xfe"}]}')  # invalid UTF-8 inside a JSON string
@example(data=b'{"messages": [{"text": "a\x00b"}]}')  # raw NUL inside a JSON string (invalid JSON)
@example(data=b"\xef\xbb\xbf{}")  # UTF-8 BOM
def test_arbitrary_bytes_never_5xx(client: TestClient[Any], data: bytes) -> None:
    r = post_raw(client, data)
    check_error(r, 400)


@PROPS
@given(when=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                         timezones=st.one_of(st.none(), st.builds(
                             lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60 - 59, 23 * 60 + 59)))))
@example(when=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))))
@example(when=datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))))
def test_any_created_at_scores(client: TestClient[Any], when: datetime) -> None:
    """Regression: a created_at at the edge of the calendar overflowed localisation (500)."""
    r = client.post("/v1/score", json={"messages": [{"text": "my bag is lost, refund me now!",
                                                     "created_at": when.isoformat()}]})
    assert r.status_code == 200, r.text
    check_result(r.json()["results"][0])


def test_megabyte_text_is_refused_by_default_and_truncated_when_allowed(
        client: TestClient[Any], roomy_client: TestClient[Any]) -> None:
    huge = ("ärger mit der Lieferung 😡 " * 45_000)[: 1 << 20]
    assert len(huge) == 1 << 20
    check_error(client.post("/v1/score", json={"messages": [{"text": huge}]}), 413, "the limit is 20000")
    r = roomy_client.post("/v1/score", json={"messages": [{"text": huge}, {"text": "fine, thanks"}]})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["truncated"] for x in res] == [True, False]
    for x in res:
        check_result(x)


def test_text_pattern_in_schema_matches_the_blank_check() -> None:
    """The published ``pattern`` accepts exactly the texts check_limits accepts (non-blank after strip)."""
    rx = re.compile(TEXT_PATTERN)
    mismatched = [hex(c) for c in range(0x110000) if (rx.search(chr(c)) is None) != chr(c).isspace()]
    assert mismatched == []
