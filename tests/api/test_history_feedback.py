"""The service's contact history and feedback through HTTP: repeat contacts across channels and
restarts, the caller's prior_contacts winning, route fields, feedback validation and metrics, and
the feedback → export → training-rows loop (the rows load with training's own loader)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from cli import main as cli_main
from service.api.app import create_app
from service.api.settings import Settings
from tests.store import conftest as store_fixtures

real_redis_server = store_fixtures.redis_url  # the real redis-server fixture of tests/store, under this name

SECRET = "http-test-secret-0123456789"


def _settings(tiny_bundle: Path, store: Path, **kw: Any) -> Settings:
    return Settings(bundle=tiny_bundle, max_messages=16, max_batch=8, max_queue=64, ort_threads=1, store=str(store),
                    store_secret=SECRET, **kw)


def _score(client: TestClient, **msg: Any) -> dict[str, Any]:
    r = client.post("/v1/score", json={"messages": [{"text": "my parcel is still missing", **msg}]})
    assert r.status_code == 200, r.text
    return r.json()["results"][0]


def _prior(result: dict[str, Any]) -> int:
    for reason in result["priority_reasons"]:
        if "prior contact" in reason:
            return int(reason.split()[0])
    return 0


def test_repeat_contacts_across_channels_and_restarts(tiny_bundle: Path, tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite3"
    when = "2026-12-01T10:00:00+00:00"
    with TestClient(create_app(_settings(tiny_bundle, store))) as c:
        first = _score(c, id="e-1", channel="email", customer_key="cust-7", created_at=when)
        assert first["is_complaint"] and _prior(first) == 0
        assert _prior(_score(c, id="p-1", channel="phone_transcript", customer_key="cust-7", created_at=when)) == 1
        assert _prior(_score(c, id="p-1", channel="phone_transcript", customer_key="cust-7", created_at=when)) == 1
        assert _prior(_score(c, id="x-1", channel="email", customer_key="someone-else", created_at=when)) == 0
    with TestClient(create_app(_settings(tiny_bundle, store))) as c:  # a restart: the store is on disk
        public = _score(c, id="t-1", channel="twitter", customer_key="cust-7", created_at=when)
        assert _prior(public) == 2 and "2 prior contacts across channels" in public["priority_reasons"]
        assert public["route"]["queue"] == "escalations" and public["route"]["channel"] == "dm"
        assert public["route"]["reasons"][0] == "repeat contact in public: 2 earlier contacts and now public: handle first"
        said = _score(c, id="t-2", channel="twitter", customer_key="cust-7", created_at=when, prior_contacts=0)
        assert _prior(said) == 0  # the caller's prior_contacts wins over the history
        info = c.get("/info").json()
        assert info["history"]["store"] == "sqlite" and info["routing"]["default_queue"] == "general"
        assert info["routing"]["queues"]["escalations"] == {"sla_minutes": 30, "hours": "daily 07:00-22:00 Europe/London"}
        metrics = c.get("/metrics").text
        assert 'ct_history_lookups_total{outcome="ok"} ' in metrics
        assert 'ct_routes_total{channel="dm",queue="escalations"}' in metrics
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"cust-7" not in raw and b"my parcel" not in raw and b"e-1" not in raw


def test_no_store_no_history(tiny_bundle: Path, tmp_path: Path) -> None:
    s = Settings(bundle=tiny_bundle, max_batch=8, max_queue=256, ort_threads=1, store="off")
    with TestClient(create_app(s)) as c:
        assert c.get("/info").json()["history"] == {"store": "off", "window_days": 30.0, "retention_days": 90.0}
        for _ in range(2):
            assert _prior(_score(c, channel="email", customer_key="cust-7")) == 0
        r = c.post("/v1/feedback", json={"message_id": "m", "labels": {"severity": "low"}})
        assert r.status_code == 503 and "CT_STORE=off" in r.json()["detail"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("body", "status", "key"), [
    ({"message_id": "m", "labels": {}}, 400, "labels"),
    ({"message_id": "m", "labels": {"severity": "huge"}}, 400, "labels.severity"),
    ({"message_id": "m", "labels": {"severity": None}}, 400, "labels.severity"),
    ({"message_id": "", "labels": {"severity": "low"}}, 400, "message_id"),
    ({"labels": {"severity": "low"}}, 400, ""),
    ({"message_id": "m", "labels": {"severity": "low"}, "text": "   "}, 400, "text"),
    ({"message_id": "m", "labels": {"severity": "low"}, "text": "x" * 3000}, 413, "text"),
    ({"message_id": "m", "labels": {"mood": "bad"}}, 400, ""),
    ({"message_id": "m", "labels": {"severity": "low"}, "language": "English"}, 400, "language"),
])
def test_bad_feedback_is_a_clear_4xx(tiny_bundle: Path, tmp_path: Path, body: dict[str, Any], status: int,
                                     key: str) -> None:
    with TestClient(create_app(_settings(tiny_bundle, tmp_path / "s.sqlite3", max_text_chars=2000))) as c:
        r = c.post("/v1/feedback", json=body)
        assert r.status_code == status, r.text
        detail = r.json()
        assert detail["detail"] and (not key or key in json.dumps(detail)), detail


def _corrections(metrics: str, head: str) -> float:
    """The value of ct_feedback_corrections_total for ``head`` in a /metrics page (0 when absent)."""
    for line in metrics.splitlines():
        if line.startswith(f'ct_feedback_corrections_total{{head="{head}"}} '):
            return float(line.split()[-1])
    return 0.0


def test_feedback_loop_export_rows_train_accepts(tiny_bundle: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store.sqlite3"
    with TestClient(create_app(_settings(tiny_bundle, store))) as c:
        sent = [
            {"message_id": "tw-1", "labels": {"severity": "critical", "private_followup": True},
             "predicted": {"severity": "high", "private_followup": True}, "channel": "twitter",
             "text": "@Air third time: bag lost 9 days, refund or I go to the press"},
            {"message_id": "tw-1", "labels": {"sentiment": "negative"}},  # a later correction of the same message
            {"message_id": "em-2", "labels": {"severity": "none", "sentiment": "positive"},
             "text": "Danke, das Paket ist angekommen!"},
            {"message_id": "ch-3", "labels": {"severity": "low"}},  # no text: counted, not trainable
        ]
        before = {h: _corrections(c.get("/metrics").text, h) for h in ("severity", "sentiment", "private_followup")}
        answers = [c.post("/v1/feedback", json=b) for b in sent]
        assert [a.status_code for a in answers] == [201] * 4
        assert answers[0].json() == {"message_id": "tw-1", "corrected": ["severity"], "confirmed": ["private_followup"],
                                     "text_kept": True}
        assert answers[3].json()["text_kept"] is False
        metrics = c.get("/metrics").text  # the registry is per process: compare with the count before
        for head, n in (("severity", 3), ("sentiment", 2), ("private_followup", 0)):  # private_followup: confirmed
            assert _corrections(metrics, head) - before[head] == n, head
    raw = store.read_bytes() + Path(f"{store}-wal").read_bytes() if Path(f"{store}-wal").exists() else store.read_bytes()
    assert b"bag lost" in raw  # kept because it was sent; nothing else about ch-3 but its labels

    out = tmp_path / "rows.jsonl"
    assert cli_main(["feedback", "export", "--output", str(out), "--store", str(store)]) == 0
    assert "exported 2 training rows" in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [
        {"id": "feedback-tw-1", "text": "@Air third time: bag lost 9 days, refund or I go to the press", "lang": "en",
         "channel": "twitter", "severity": "critical", "private_followup": True, "sentiment": "negative"},
        {"id": "feedback-em-2", "text": "Danke, das Paket ist angekommen!", "lang": "de", "channel": None,
         "severity": "none", "private_followup": None, "sentiment": "positive"}]
    from training.data import MISSING, load_examples

    examples = load_examples([out])  # training's own loader: the file is accepted as it is
    assert [(e.id, e.severity, e.followup, e.sentiment) for e in examples] == [
        ("feedback-tw-1", 4, 1, 0), ("feedback-em-2", 0, MISSING, 2)]


def test_replicas_share_the_history_through_redis(tiny_bundle: Path, real_redis_server: str) -> None:
    """Two app instances (replicas) on one real redis-server: a contact seen by one counts on the other."""
    import redis

    redis.Redis.from_url(real_redis_server).flushdb()
    when = "2026-12-01T10:00:00+00:00"
    apps = [create_app(Settings(bundle=tiny_bundle, max_batch=8, max_queue=256, ort_threads=1, store=real_redis_server,
                                store_secret=SECRET)) for _ in range(2)]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        assert _prior(_score(a, id="1", channel="email", customer_key="cust-r", created_at=when)) == 0
        assert _prior(_score(b, id="2", channel="sms", customer_key="cust-r", created_at=when)) == 1
        assert _prior(_score(a, id="3", channel="twitter", customer_key="cust-r", created_at=when)) == 2
        assert b.post("/v1/feedback", json={"message_id": "3", "labels": {"severity": "high"}}).status_code == 201
        assert a.get("/info").json()["history"]["store"] == "redis"
    keys = [k for k in redis.Redis.from_url(real_redis_server).scan_iter()]
    assert keys and not any(b"cust-r" in k for k in keys)


def test_a_failing_store_does_not_stop_scoring(tiny_bundle: Path, tmp_path: Path) -> None:
    app = create_app(_settings(tiny_bundle, tmp_path / "s.sqlite3"))
    with TestClient(app) as c:
        app.state.runtime.store.close()  # the store goes away under a running service
        res = _score(c, channel="email", customer_key="cust-1")
        assert _prior(res) == 0 and res["route"]["queue"]
        assert 'ct_history_lookups_total{outcome="error"} 1.0' in c.get("/metrics").text
        r = c.post("/v1/feedback", json={"message_id": "m", "labels": {"severity": "low"}})
        assert r.status_code == 503 and "feedback store unavailable" in r.json()["detail"]
