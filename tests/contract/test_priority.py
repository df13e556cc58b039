"""Every priority rule, its reason text, and determinism."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.contract.priority import BusinessHours, PriorityConfig, Signals, load_config, priority
from service.errors import UsageError

CFG = load_config()
CRITICAL = {"none": 0.02, "low": 0.02, "medium": 0.03, "high": 0.02, "critical": 0.91}
NONE = {"none": 0.9, "low": 0.05, "medium": 0.03, "high": 0.01, "critical": 0.01}
SAT_NIGHT = datetime(2026, 3, 7, 23, 10, tzinfo=UTC)  # a Saturday
TUE_NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def sig(**kw: object) -> Signals:
    """Signals as triage builds them: is_complaint decided at the default threshold unless given."""
    base: dict[str, object] = {"severity_scores": CRITICAL, "private_followup": False,
                               "private_followup_probability": 0.1, "when": TUE_NOON}
    merged = {**base, **kw}
    merged.setdefault("is_complaint", 1.0 - merged["severity_scores"]["none"] >= 0.5)  # type: ignore[index]
    return Signals(**merged)  # type: ignore[arg-type]


def test_base_is_probability_weighted_severity() -> None:
    score, reasons = priority(sig(), CFG)
    expected = sum(CFG.severity_points[k] * p for k, p in CRITICAL.items())
    assert score == round(expected)
    assert reasons == ["severity critical (p=0.91)"]


@pytest.mark.parametrize(("kw", "points", "reason"), [
    ({"private_followup": True, "private_followup_probability": 0.83}, 8, "private follow-up needed (p=0.83)"),
    ({"channel": "twitter"}, 4, "public channel (twitter)"),
    ({"followers": 302_000}, 10, "author reach 302k followers"),
    ({"followers": 12_000}, 5, "author reach 12k followers"),
    ({"followers": 2_500_000}, 15, "author reach 2.5M followers"),
    ({"verified": True}, 3, "verified author"),
    ({"promoted": True}, 15, "paid/promoted post"),
    ({"prior_contacts": 3}, 12, "3 prior contacts across channels"),
    ({"prior_contacts": 1}, 4, "1 prior contact across channels"),
    ({"prior_contacts": 9}, 12, "9 prior contacts across channels"),
    ({"when": SAT_NIGHT}, 5, "received outside business hours (Sat 23:10 Europe/London)"),
])
def test_each_boost_adds_points_and_a_reason(kw: dict[str, object], points: int, reason: str) -> None:
    base, _ = priority(sig(severity_scores={"none": 0.1, "low": 0.2, "medium": 0.3, "high": 0.2, "critical": 0.2}), CFG)
    score, reasons = priority(sig(severity_scores={"none": 0.1, "low": 0.2, "medium": 0.3, "high": 0.2,
                                                   "critical": 0.2}, **kw), CFG)
    assert score - base == points
    assert reasons[-1] == reason


def test_small_accounts_and_private_channels_add_nothing() -> None:
    assert priority(sig(followers=900, channel="email"), CFG) == priority(sig(), CFG)


def test_non_complaints_get_no_metadata_boosts() -> None:
    score, reasons = priority(sig(severity_scores=NONE, promoted=True, followers=500_000, when=SAT_NIGHT), CFG)
    assert score <= 5 and reasons == ["severity none (p=0.90)"]
    # the gate is the caller's is_complaint decision (the bundle's threshold), not the scores themselves
    gated = priority(sig(promoted=True, is_complaint=False), CFG)
    assert gated == priority(sig(is_complaint=False), CFG) and "paid/promoted post" not in gated[1]


def test_clamped_to_100_and_deterministic() -> None:
    s = sig(private_followup=True, channel="twitter", followers=5_000_000, verified=True, promoted=True,
            prior_contacts=6, when=SAT_NIGHT)
    first = priority(s, CFG)
    assert first[0] == 100
    assert all(priority(s, CFG) == first for _ in range(5))


def test_unknown_time_means_no_business_hours_rule() -> None:
    assert priority(sig(when=None), CFG) == priority(sig(), CFG)


def test_business_hours_in_local_time() -> None:
    hours = BusinessHours(timezone="America/New_York")
    assert hours.is_open(datetime(2026, 3, 10, 14, 0, tzinfo=UTC))  # 10:00 in New York
    assert not hours.is_open(datetime(2026, 3, 10, 11, 30, tzinfo=UTC))  # 07:30 EDT
    assert not hours.is_open(datetime(2026, 3, 14, 15, 0, tzinfo=UTC))  # Saturday
    assert hours.is_open(datetime(2026, 3, 10, 14, 0))  # naive times are UTC


def test_config_file_overrides(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[boosts]\npromoted = 40\n[business_hours]\ntimezone = "Asia/Tokyo"\n')
    cfg = load_config(path)
    assert cfg.promoted == 40 and cfg.hours.timezone == "Asia/Tokyo" and cfg.private_followup == 8
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        BusinessHours(timezone="Mars/Olympus")
    with pytest.raises(ValueError):
        PriorityConfig(severity_points={"none": 0})


@pytest.mark.parametrize(("toml", "timezone", "needle"), [
    ("", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ("[business_hours]\ntimezone = \"Nowhere\"\n", None, "unknown time zone 'Nowhere'"),
    ("[business_hours]\nstart = \"8am\"\n", None, "HH:MM"),
    ("[business_hours]\ndays = [\"Funday\"]\n", None, "unknown business days"),
    ("[boosts]\npromoted = \"lots\"\n", None, "could not convert"),
    ("not toml at all = = =\n", None, "priority config"),
    ("complaint_threshold = 0.5\n", None, "the bundle's complaint_threshold"),
])
def test_bad_config_is_a_usage_error_naming_the_problem(tmp_path: Path, toml: str, timezone: str | None,
                                                        needle: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(toml)
    with pytest.raises(UsageError, match=re.escape(needle)):
        load_config(path, timezone_name=timezone)


def test_shipped_config_loads() -> None:
    assert load_config() == PriorityConfig()  # priority.toml documents exactly the defaults
