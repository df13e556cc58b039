"""One complaint threshold: the bundle's ``complaint_threshold`` decides ``is_complaint`` and gates the
metadata boosts of the priority; bundles without one use 0.5; GET /info shows it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from litestar.testing import TestClient

from model.bundle import read_meta
from model.scorer import Predictions
from service.api.app import create_app, load_runtime
from service.api.settings import Settings
from service.contract.priority import load_config
from service.contract.schemas import Author, Message
from service.contract.triage import Thresholds, build_results, bundle_thresholds

# p(none) = 0.3: complaint probability 0.7, a complaint at 0.5 but not at 0.8
PREDS = Predictions(severity=np.array([[0.3, 0.1, 0.2, 0.3, 0.1]]), followup=np.array([0.9]),
                    sentiment=np.array([[0.8, 0.1, 0.1]]), truncated=np.array([False]))
VIRAL = Message(text="you are the best airline!", channel="twitter", author=Author(followers=2_000_000),
                promoted=True, prior_contacts=2, created_at=datetime(2026, 3, 7, 23, 10, tzinfo=UTC))


def test_bundles_without_a_complaint_threshold_use_the_default(tiny_bundle: Path) -> None:
    meta = read_meta(tiny_bundle)  # written without calibration: BundleMeta's default 0.5
    assert bundle_thresholds(meta) == Thresholds(complaint=0.5,
                                                 private_followup=meta.followup_threshold)
    given = SimpleNamespace(followup_threshold=0.42, complaint_threshold=0.8)  # a bundle that records one
    assert bundle_thresholds(given) == Thresholds(complaint=0.8, private_followup=0.42)  # type: ignore[arg-type]


@pytest.mark.parametrize(("threshold", "complaint"), [(0.5, True), (0.69, True), (0.8, False)])
def test_one_threshold_decides_is_complaint_and_the_priority_gate(threshold: float, complaint: bool) -> None:
    [res] = build_results([VIRAL], PREDS, Thresholds(complaint=threshold, private_followup=0.5), load_config())
    assert res.complaint_probability == pytest.approx(0.7)
    assert res.is_complaint is complaint
    boosted = [r for r in res.priority_reasons if not r.startswith("severity ")]
    if complaint:
        assert "paid/promoted post" in boosted and "author reach 2M followers" in boosted
    else:
        assert boosted == []  # not a complaint: no metadata boost, whatever the reach


def test_info_shows_the_threshold_the_results_use(tiny_bundle: Path) -> None:
    settings = Settings(bundle=tiny_bundle, max_messages=8, max_batch=8, max_queue=64, ort_threads=1)
    runtime = load_runtime(settings)
    strict = dataclasses.replace(runtime, thresholds=dataclasses.replace(runtime.thresholds, complaint=0.999999))
    with TestClient(create_app(settings, strict)) as c:
        assert c.get("/info").json()["thresholds"]["is_complaint"] == 0.999999
        res = c.post("/v1/score", json={"messages": [{"text": "refund me now, this is a scam"}]}).json()["results"][0]
        assert res["is_complaint"] is (res["complaint_probability"] >= 0.999999)


@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_severity_label_follows_the_complaint_decision(threshold: float) -> None:
    """P(none) = 0.3 is the largest single score, yet at 0.5 this is a complaint: the label is the
    most likely complaint level; at 0.8 it is not a complaint and the label is none."""
    [res] = build_results([VIRAL], PREDS, Thresholds(complaint=threshold, private_followup=0.5), load_config())
    assert res.severity == ("high" if threshold == 0.5 else "none")
    assert (res.severity == "none") is (not res.is_complaint)
