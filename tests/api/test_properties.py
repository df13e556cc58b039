"""Hypothesis properties of the HTTP API: any Unicode text either scores or is refused with a clear 4xx JSON.

Any bytes never give a 5xx; any ``created_at`` scores; the published text pattern matches the
validator's blank check.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from litestar.testing import TestClient

from service.api.app import TEXT_PATTERN, create_app
from service.api.settings import Settings
from tests.strategies import PROPS, TEXTS, WORDY, check_probabilities, lone_surrogates

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
