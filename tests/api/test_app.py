"""HTTP API through Litestar's test clients: endpoints, limits, errors, auth, micro-batching."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any, Iterator

import msgspec
import pytest
from litestar.testing import AsyncTestClient, TestClient

from model.scorer import Scorer
from service.api.app import create_app
from service.api.settings import Settings, load_api_keys
from service.contract.priority import load_config
from service.contract.schemas import Message
from service.contract.triage import score_messages
from tests.helpers import CONTRACT_FIELDS


@pytest.fixture(scope="module")
def settings(tiny_bundle: Path) -> Settings:
    return Settings(bundle=tiny_bundle, max_messages=16, max_text_chars=2000, max_body_bytes=200_000,
                    max_batch=8, max_queue=64, ort_threads=1)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(settings)) as c:
        yield c


def post(client: TestClient[Any], body: Any, **kw: Any) -> Any:
    return client.post("/v1/score", json=body, **kw)


CONTRACT = set(CONTRACT_FIELDS)


def test_score_returns_every_contract_field_in_order(client: TestClient[Any], sample_texts: list[str]) -> None:
    msgs = [{"text": t, "id": f"m{i}"} for i, t in enumerate(sample_texts)]
    r = post(client, {"messages": msgs})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny-test" and body["model_version"] == "0.0.1"
    assert r.headers["x-model-version"] == "tiny-test/0.0.1"
    assert [x["id"] for x in body["results"]] == [m["id"] for m in msgs]
    for res in body["results"]:
        assert set(res) == CONTRACT
        assert set(res["severity_scores"]) == {"none", "low", "medium", "high", "critical"}
        assert abs(sum(res["severity_scores"].values()) - 1) < 1e-9
        assert res["complaint_probability"] == pytest.approx(1 - res["severity_scores"]["none"])
        assert 0 <= res["priority"] <= 100 and res["priority_reasons"]
    assert body["results"][6]["truncated"] is True


def test_http_equals_in_process_scorer(client: TestClient[Any], tiny_bundle: Path, sample_texts: list[str]) -> None:
    msgs = [{"text": t, "id": str(i), "channel": "twitter", "author": {"followers": 50_000 * i},
             "created_at": "2026-03-07T23:10:00+00:00", "prior_contacts": i % 3} for i, t in enumerate(sample_texts)]
    http = post(client, {"messages": msgs}).json()["results"]
    local = score_messages(Scorer.load(tiny_bundle), msgspec.convert(msgs, list[Message]), load_config())
    # every label, flag, priority and reason is identical; probabilities agree to float rounding (the
    # service groups messages into model batches by its own token budget, so batch shapes differ)
    _assert_close(http, msgspec.to_builtins(local))


def _assert_close(got: Any, want: Any, where: str = "results") -> None:
    """Equal, except floats, which may differ by 1e-6."""
    if isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-6), where
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            _assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_close(g, w, f"{where}[{i}]")
    else:
        assert got == want, where


def test_health_ready_info_metrics_openapi(client: TestClient[Any]) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    info = client.get("/info").json()
    assert info["labels"]["severity"] == ["none", "low", "medium", "high", "critical"]
    assert info["limits"]["max_messages"] == 16
    # the tiny bundle predates BundleMeta.complaint_threshold: the 0.5 default decides is_complaint
    assert info["thresholds"] == {"private_followup": 0.5, "is_complaint": 0.5}
    # what the service resolved: streams (auto), threads per call, and the planner's per-call cost
    streams, threads = info["batching"]["model_streams"], info["batching"]["intra_op_threads"]
    assert streams == (2 if (os.cpu_count() or 1) >= 2 else 1) and threads == 1
    assert info["batching"]["overhead_tokens"] == 8  # single-thread calls (service.api.batcher)
    post(client, {"messages": [{"text": "hello"}]})
    post(client, {"messages": []})
    metrics = client.get("/metrics").text
    for name in ("ct_batch_size_bucket", "ct_queue_depth", "ct_predictions_total", "ct_messages_scored_total",
                 "litestar_requests_total", "litestar_request_duration_seconds", "ct_errors_total"):
        assert name in metrics, name
    schema = client.get("/schema/openapi.json").json()
    assert "/v1/score" in schema["paths"]


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"messages": []}, 400, "at least one message"),
    ({"messages": [{"text": "   \n\t"}]}, 400, "messages[0].text is empty"),
    ({"messages": [{"text": 5}]}, 400, "messages[0].text"),
    ({"messages": [{"text": "a", "colour": "red"}]}, 400, "unknown field `colour`"),
    ({"messages": [{"text": "a", "id": ["x"]}]}, 400, "messages[0].id"),
    ({"msgs": []}, 400, "msgs"),
    ([1, 2], 400, "Validation failed"),
    ({"messages": [{"text": "x"}] * 17}, 413, "limit 16"),
    ({"messages": [{"text": "y" * 2001}]}, 413, "the limit is 2000"),
])
def test_bad_requests_get_clear_4xx(client: TestClient[Any], body: Any, status: int, needle: str) -> None:
    r = post(client, body)
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["status_code"] == status
    assert needle in payload["detail"] + msgspec.json.encode(payload.get("extra")).decode()


def test_bad_metadata_is_scored_with_warnings(client: TestClient[Any]) -> None:
    """What used to be a 400 for the whole request: each bad field is ignored and named on its result."""
    msgs = [{"text": "my refund never came", "author": {"followers": -3}}, {"text": "a", "channel": "pigeon"},
            {"text": "b", "created_at": "yesterday"}, {"text": "c", "prior_contacts": "three", "promoted": "maybe"},
            {"text": "fine", "channel": "twitter", "created_at": "Tue Oct 31 22:10:47 +0000 2017"}]
    r = post(client, {"messages": msgs})
    assert r.status_code == 200, r.text
    warnings = [res["warnings"] for res in r.json()["results"]]
    assert [len(w) for w in warnings] == [1, 1, 1, 2, 0], warnings
    assert warnings[0][0] == "author followers must be an integer from 0 to 1000000000, got -3"
    assert warnings[1][0].startswith("unknown channel: 'pigeon'") and "yesterday" in warnings[2][0]
    assert any("prior_contacts" in w for w in warnings[3]) and any("promoted" in w for w in warnings[3])


@pytest.mark.parametrize(("when", "local"), [
    ("2026-03-07T23:10:00Z", "Sat 23:10"), ("2026-03-09 10:00:00+01:00", None), ("Mon, 09 Mar 2026 20:00:00 +0000",
                                                                                "Mon 20:00"),
    ("Mon Mar 09 20:00:00 +0000 2026", "Mon 20:00"), (1773086400, "Mon 20:00"), ("1773086400000", "Mon 20:00"),
    ("3/9/2026 20:00", None),  # ambiguous month/day: a warning, then the arrival time decides
])
def test_created_at_formats_over_http(client: TestClient[Any], when: Any, local: str | None) -> None:
    body = {"messages": [{"text": "my parcel never arrived, refund me", "created_at": when}]}
    [res] = post(client, body).json()["results"]
    reasons = " | ".join(res["priority_reasons"])
    if local is not None:
        assert res["warnings"] == [] and f"outside business hours ({local} Europe/London)" in reasons, res
    elif isinstance(when, str) and "/" in when:
        assert res["warnings"] and "ambiguous" in res["warnings"][0]
    else:
        assert res["warnings"] == [] and "outside business hours" not in reasons, res


def test_created_at_format_and_input_timezone_settings(tiny_bundle: Path) -> None:
    settings = Settings(bundle=tiny_bundle, max_batch=8, ort_threads=1, created_at_format="%m/%d/%Y %H:%M",
                        input_timezone="America/New_York")
    with TestClient(create_app(settings)) as c:
        msgs = [{"text": "my parcel never arrived, refund me", "created_at": "3/9/2026 15:00"},  # 19:00 in London
                {"text": "my parcel never arrived, refund me", "created_at": "2026-03-09T15:00:00"}]
        first, second = post(c, {"messages": msgs}).json()["results"]
    assert first["warnings"] == []
    assert "outside business hours (Mon 19:00 Europe/London)" in " | ".join(first["priority_reasons"])
    assert second["warnings"] == ["created_at does not match --created-at-format '%m/%d/%Y %H:%M', "
                                  "got '2026-03-09T15:00:00'"]


def test_body_content_type_and_encoding_limits(client: TestClient[Any]) -> None:
    big = b'{"messages":[{"text":"' + b"z" * 300_000 + b'"}]}'
    r = client.post("/v1/score", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["status_code"] == 413
    r = client.post("/v1/score", content=b'{"messages": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    r = client.post("/v1/score", content=b'{"messages":[{"text":"a"}]}', headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/v1/score", content=b"\x1f\x8b", headers={"content-type": "application/json",
                                                              "content-encoding": "gzip"})
    assert r.status_code == 415 and "uncompressed" in r.json()["detail"]


def test_long_text_is_truncated_and_flagged(client: TestClient[Any]) -> None:
    r = post(client, {"messages": [{"text": "delay " * 300}, {"text": "short"}]})
    assert [x["truncated"] for x in r.json()["results"]] == [True, False]


def test_auth_on(settings: Settings, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# comment\nk-one\nk-two\n")

    secured = Settings(**{**settings.__dict__, "api_keys": load_api_keys({"CT_API_KEYS_FILE": str(keys)})})
    with TestClient(create_app(secured)) as c:
        body = {"messages": [{"text": "hi"}]}
        assert c.post("/v1/score", json=body).status_code == 401
        r = c.post("/v1/score", json=body, headers={"x-api-key": "nope"})
        assert r.status_code == 401 and "API key" in r.json()["detail"]
        assert c.post("/v1/score", json=body, headers={"x-api-key": "k-two"}).status_code == 200
        assert c.post("/v1/score", json=body, headers={"authorization": "Bearer k-one"}).status_code == 200
        assert c.get("/info").status_code == 401 and c.get("/metrics").status_code == 401
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200


def test_auth_off_by_default(client: TestClient[Any]) -> None:
    assert post(client, {"messages": [{"text": "hi"}]}).status_code == 200


@pytest.mark.anyio
async def test_concurrent_requests_each_get_their_own_results(settings: Settings, tiny_bundle: Path) -> None:
    rng = random.Random(7)
    corpus = [f"order {i} {'late again ' * rng.randint(0, 30)}" for i in range(60)]
    requests = [[{"text": rng.choice(corpus), "id": f"r{r}-{k}"} for k in range(rng.randint(1, 9))]
                for r in range(40)]
    scorer = Scorer.load(tiny_bundle)
    async with AsyncTestClient(create_app(settings)) as c:
        responses = await asyncio.gather(*(c.post("/v1/score", json={"messages": m}) for m in requests))
        sizes = (await c.get("/metrics")).text
    for msgs, resp in zip(requests, responses):
        assert resp.status_code == 200
        got = resp.json()["results"]
        assert [g["id"] for g in got] == [m["id"] for m in msgs]
        expected = scorer.predict([m["text"] for m in msgs])
        for g, sev in zip(got, expected.severity):
            assert list(g["severity_scores"].values()) == pytest.approx(sev.tolist(), abs=1e-5)
    # concurrent requests were coalesced: some model batch held more than one request's messages
    counts = {line.split()[0]: float(line.split()[1]) for line in sizes.splitlines()
              if line.startswith("ct_batch_size_bucket")}
    assert counts['ct_batch_size_bucket{le="4.0"}'] < counts['ct_batch_size_bucket{le="+Inf"}']
