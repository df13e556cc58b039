"""One validator: the same hostile messages sent over HTTP and fed to the batch job are accepted,
warned about or refused alike (same field, same status, same warnings), and the accepted ones score
to the same values. Bad metadata is a warning, never an error: only the text, the id and the
message's shape can make a message fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import msgspec
import pytest
from litestar.testing import TestClient

from model.scorer import Scorer
from service.api.app import create_app
from service.api.settings import Settings
from service.batch.config import Columns
from service.batch.rows import score_rows
from service.contract.priority import load_config
from service.contract.schemas import ScoreRequest
from service.contract.validate import ContractError, check_request, error_kind, to_message

MAX_TEXT = 2000
BASE = {"text": "my parcel never arrived, refund me", "created_at": "2026-03-07T23:10:00+00:00"}
#: (field path, value): each replaces one field of BASE (None as a value: JSON null)
HOSTILE: list[tuple[str, Any]] = [
    ("text", ""), ("text", "   \n\t"), ("text", "\u3000\u2028"), ("text", 5), ("text", None), ("text", ["a"]),
    ("text", "x" * MAX_TEXT), ("text", "x" * (MAX_TEXT + 1)), ("text", "\x00 nul and \u202e bidi"),
    ("id", "x" * 256), ("id", "x" * 257), ("id", 5), ("id", None), ("id", ""), ("id", {"a": 1}),
    ("channel", "sms"), ("channel", "SMS"), ("channel", " sms"), ("channel", "pigeon"), ("channel", ""),
    ("channel", 3), ("channel", None),
    ("author.followers", 1_000_000_000), ("author.followers", 1_000_000_001), ("author.followers", -1),
    ("author.followers", "12"), ("author.followers", "1e3"), ("author.followers", 12.0), ("author.followers", 12.5),
    ("author.followers", "twelve"), ("author.followers", True), ("author.followers", None),
    ("author.verified", "true"), ("author.verified", "TRUE"), ("author.verified", "yes"), ("author.verified", 1),
    ("author.verified", 2), ("author.verified", None),
    ("author", []), ("author", "x"), ("author", {}), ("author", {"followers": 1, "colour": 2}), ("author", None),
    ("promoted", "true"), ("promoted", "1"), ("promoted", 0), ("promoted", "yes"), ("promoted", None),
    ("promoted", 2), ("promoted", "False"),
    ("prior_contacts", 10_000), ("prior_contacts", 10_001), ("prior_contacts", -1), ("prior_contacts", "3"),
    ("prior_contacts", 3.0), ("prior_contacts", "3.5"), ("prior_contacts", None), ("prior_contacts", True),
    ("created_at", "2026-03-07T23:10:00Z"), ("created_at", "2026-03-07 23:10:00"), ("created_at", "2026-03-07"),
    ("created_at", "yesterday"), ("created_at", 0.01), ("created_at", None),
    ("created_at", "9999-12-31T23:59:59-14:00"), ("created_at", "0001-01-01T00:00:00+14:00"),
    ("customer_key", "crm-1"), ("customer_key", ""), ("customer_key", "k" * 257), ("customer_key", 42),
    ("customer_key", None), ("prior_contacts", 0),
    ("colour", "red"),
]


def hostile(path: str, value: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {**BASE, "author": {"followers": 50_000, "verified": False}}
    if "." in path:
        outer, inner = path.split(".")
        msg[outer] = {**msg[outer], inner: value}
    else:
        msg[path] = value
    return msg


#: the cases whose text is fine but one metadata field cannot be read: scored, with one warning naming it
WARNED = {"channel='SMS'", "channel=' sms'", "channel='pigeon'", "channel=''", "channel=3",
          "author.followers=1000000001", "author.followers=-1", "author.followers=12.5",
          "author.followers='twelve'", "author.followers=True", "author.verified='yes'", "author.verified=2",
          "author=[]", "author='x'", "author={'followers': 1, 'colour': 2}", "promoted='yes'", "promoted=2",
          "prior_contacts=10001", "prior_contacts=-1", "prior_contacts='3.5'", "prior_contacts=True",
          "created_at='2026-03-07'", "created_at='yesterday'",
          "customer_key=''", "customer_key=42", f"customer_key={'k' * 257!r}"[:40]}
CASES = [hostile(p, v) for p, v in HOSTILE] + [{"created_at": BASE["created_at"]}]  # and one without any text
IDS = [f"{p}={v!r}"[:40] for p, v in HOSTILE] + ["no text"]


@pytest.fixture(scope="module")
def client(tiny_bundle: Path) -> Iterator[TestClient[Any]]:
    settings = Settings(bundle=tiny_bundle, max_messages=4, max_text_chars=MAX_TEXT, max_batch=8, max_queue=64,
                        ort_threads=1)
    with TestClient(create_app(settings)) as c:
        yield c


def http_verdict(client: TestClient[Any], msg: dict[str, Any]) -> tuple[int, str, Any]:
    """(status, offending field or "", result) of sending ``msg`` alone."""
    r = client.post("/v1/score", json={"messages": [msg]})
    body = r.json()
    if r.status_code == 200:
        return 200, "", body["results"][0]
    keys = [e.get("key", "") for e in body.get("extra") or []]
    assert len(keys) == 1, body
    key = keys[0].removeprefix("messages[0]").removeprefix(".")  # "messages[0]" itself: the whole message
    return r.status_code, key, None


def batch_verdict(msg: dict[str, Any]) -> tuple[int, str, list[str]]:
    """(status, offending field or "", warnings) of the batch job's validator on the same fields."""
    try:
        return 200, "", to_message(msg, max_text_chars=MAX_TEXT).warnings
    except ContractError as exc:
        return exc.status, exc.key, []


@pytest.mark.parametrize("msg", CASES, ids=IDS)
def test_http_and_batch_accept_and_refuse_the_same_messages(client: TestClient[Any], msg: dict[str, Any]) -> None:
    status, key, result = http_verdict(client, msg)
    assert batch_verdict(msg) == (status, key, result["warnings"] if result else [])


@pytest.mark.parametrize(("case", "msg"), list(zip(IDS, CASES)), ids=IDS)
def test_bad_metadata_is_a_warning_naming_the_field(case: str, msg: dict[str, Any]) -> None:
    status, _, warnings = batch_verdict(msg)
    if case in WARNED:
        field = case.split("=")[0].split(".")[-1]
        assert status == 200 and len(warnings) == 1, warnings
        assert field.replace("_", " ") in warnings[0].replace("_", " "), warnings
    else:
        assert warnings == [], warnings


def test_the_table_has_every_kind() -> None:
    verdicts = [batch_verdict(m) for m in CASES]
    statuses = [v[0] for v in verdicts]
    assert statuses.count(200) >= 50 and statuses.count(400) >= 10 and 413 in statuses
    assert sum(bool(v[2]) for v in verdicts) == len(WARNED)
    refused = {i.split("=")[0] for i, v in zip(IDS, verdicts) if v[0] != 200}
    assert refused == {"text", "id", "colour", "no text"}  # only the text, the id and the shape are errors


def flat(msg: dict[str, Any]) -> dict[str, Any] | None:
    """``msg`` as a file row (Columns' default names), or None when a file cannot say it: a nested
    or unknown field, or a null or "" outside the text (in a file an empty cell or a null means "absent")."""
    author = msg.get("author", {})
    if not isinstance(author, dict) or set(author) - {"followers", "verified"} or set(msg) - {*BASE, "id", "channel",
                                                                                             "author", "promoted",
                                                                                             "prior_contacts"}:
        return None
    row = {k: v for k, v in msg.items() if k != "author"}
    row.update({"author_followers": author.get("followers"), "verified": author.get("verified")} if author else {})
    cells = [v for k, v in row.items() if k != "text"] + list(author.values())
    if any(v is None or v == "" for v in cells) or row.get("text") is None:
        return None
    return row


def test_file_rows_score_to_the_http_results(client: TestClient[Any], tiny_bundle: Path) -> None:
    """The same messages as rows of a file, through the batch job's own row scorer."""
    pairs = [(m, row) for m in CASES if (row := flat(m)) is not None]
    assert len(pairs) >= 40
    scorer, cfg = Scorer.load(tiny_bundle), load_config()
    for msg, row in pairs:  # one row per call: the same batch composition as one message per request
        [rec] = score_rows(scorer, cfg, [(0, row)], Columns(), MAX_TEXT)
        status, _, result = http_verdict(client, msg)
        assert (rec["error"] is None) == (status == 200), (msg, rec["error"])
        if result is not None and any(w.startswith("created_at") for w in result["warnings"]):
            # a dropped created_at is absent: HTTP judges business hours by the arrival time, batch not at all
            result["priority_reasons"] = [r for r in result["priority_reasons"] if not r.startswith("received")]
            assert rec["priority_reasons"] == result["priority_reasons"]
            del result["priority"]
            # the route's deadline is counted from that arrival time too, so only the queue must agree
            assert rec["route"]["queue"] == result["route"]["queue"]
            del result["route"]
        if result is not None:
            assert {k: rec[k] for k in result} == result, msg


def test_request_limits_use_the_same_text_rule() -> None:
    req = msgspec.convert({"messages": [{"text": "ok"}, {"text": " "}]}, ScoreRequest)
    with pytest.raises(ContractError) as exc:
        check_request(req, max_messages=4, max_text_chars=MAX_TEXT)
    assert (exc.value.key, exc.value.reason, exc.value.status) == (
        "messages[1].text", "messages[1].text is empty or whitespace", 400)
    with pytest.raises(ContractError, match="too many messages: 2 > limit 1"):
        check_request(req, max_messages=1, max_text_chars=MAX_TEXT)


@pytest.mark.parametrize(("reason", "kind"), [
    ("unknown channel: 'fax' (allowed: twitter, …)", "unknown channel"),
    ("author followers must be an integer from 0 to 1000000000, got -5", "author followers must be an integer "
                                                                          "from 0 to 1000000000"),
    ("text is empty or whitespace", "text is empty or whitespace"),
    ("text too long: 101 characters, the limit is 100", "text too long"),
])
def test_error_kind_drops_the_values(reason: str, kind: str) -> None:
    assert error_kind(reason) == kind
