"""Routing rules: the shipped file, rule semantics, SLA clocks in business hours (time zones, DST,
weekends), clear errors for bad files, and the route/personal-data/history fields of results."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.contract.routing import DEFAULT_ROUTING, RouteSignals, load_routing, parse_routing, route
from service.errors import UsageError

CFG = load_routing()
SAT_NIGHT = datetime(2026, 3, 7, 23, 10, tzinfo=UTC)
FRI_1750 = datetime(2026, 3, 6, 17, 50, tzinfo=UTC)


def sig(**kw: Any) -> RouteSignals:
    base: dict[str, Any] = {"severity": "medium", "sentiment": "negative", "is_complaint": True,
                            "private_followup": False, "language": "en", "channel": "twitter", "when": FRI_1750}
    return RouteSignals(**{**base, **kw})


def test_very_angry_gets_a_callback_in_escalations() -> None:
    queue, channel, by, reasons = route(sig(severity="critical", channel="facebook"), CFG)
    assert (queue, channel) == ("escalations", "callback")
    assert reasons[0] == "very angry: offer a call-back rather than a DM"
    assert by == datetime(2026, 3, 6, 18, 20, tzinfo=by.tzinfo) and by.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_public_personal_data_gets_a_dm_invitation_and_a_note_to_hide_the_post() -> None:
    queue, channel, _, reasons = route(sig(personal_data=("iban", "phone")), CFG)
    assert (queue, channel) == ("social", "dm")
    assert ("personal data in public: the post shows iban, phone: invite to DM and ask the customer to hide "
            "or delete the post") in reasons


def test_repeat_contact_gone_public_goes_to_the_top() -> None:
    queue, channel, _, reasons = route(sig(prior_contacts=2), CFG)
    assert (queue, channel) == ("escalations", "dm")
    assert reasons[0] == "repeat contact in public: 2 earlier contacts and now public: handle first"
    assert route(sig(prior_contacts=2, channel="email"), CFG)[:2] == ("general", "email")  # not public


def test_private_channels_and_praise() -> None:
    assert route(sig(channel="phone_transcript"), CFG)[1] == "callback"
    assert route(sig(channel="chat"), CFG)[1] == "dm"
    assert route(sig(channel=None), CFG)[:2] == ("general", "public_reply")  # defaults
    queue, channel, by, reasons = route(sig(is_complaint=False, severity="none", sentiment="positive",
                                            channel="email"), CFG)
    assert (channel, by, reasons) == ("none", None, ["praise: no reply needed"])


def test_outside_hours_the_clock_starts_at_opening() -> None:
    # Sat 23:10 London: general is closed until Mon 08:00; 240 business minutes -> Mon 12:00
    _, _, by, reasons = route(sig(channel="email", when=SAT_NIGHT), CFG)
    assert by is not None and by.isoformat() == "2026-03-09T12:00:00+00:00"
    assert any("received outside business hours (Mon-Fri 08:00-18:00 Europe/London)" in r for r in reasons)
    # Fri 17:50: 10 minutes on Friday, the other 230 on Monday -> Mon 11:50
    assert route(sig(channel="email"), CFG)[2].isoformat() == "2026-03-09T11:50:00+00:00"  # type: ignore[union-attr]


def test_business_hours_are_wall_clock_across_dst_and_zones() -> None:
    cfg = parse_routing({"queues": {"de": {"sla_minutes": 60, "timezone": "Europe/Berlin", "start": "09:00",
                                           "end": "17:00"}}})
    # Fri 27 Mar 2026 16:30 CET (15:30 UTC): 30 min Friday, 30 min Monday after the switch to CEST
    _, _, by, _ = route(sig(when=datetime(2026, 3, 27, 15, 30, tzinfo=UTC)), cfg)
    assert by is not None and by.isoformat() == "2026-03-30T09:30:00+02:00"
    # a naive created_at is read as UTC; the calendar's edge gives no deadline, not an error
    assert route(sig(when=datetime(2026, 3, 30, 7, 0)), cfg)[2].isoformat() == "2026-03-30T10:00:00+02:00"  # type: ignore[union-attr]
    assert route(sig(when=datetime(9999, 12, 31, 23, 0, tzinfo=UTC)), cfg)[2] is None
    assert route(sig(when=None), cfg)[2] is None


def test_every_line_of_the_shipped_file_is_documented() -> None:
    text = DEFAULT_ROUTING.read_text()
    tomllib.loads(text)
    settings = [ln for ln in text.splitlines() if "=" in ln and not ln.lstrip().startswith("#")]
    undocumented = [ln for ln in settings if "#" not in ln and not ln.startswith(("when", "note", "name", "days",
                                                                                 "start", "end", "timezone"))]
    # queue/channel lines say why in a comment or are explained by the rule's note / the header
    assert all(("#" in ln) or ln.split("=")[0].strip() in ("queue", "channel", "sla_minutes") for ln in undocumented)
    assert text.count("[[rules]]") == len(CFG.rules) and CFG.default_queue == "general"


@pytest.mark.parametrize(("edit", "message"), [
    ({"rules": [{"name": "x", "queue": "vip"}]}, "rule 1 ('x'): unknown queue 'vip' (defined: general"),
    ({"rules": [{"name": "x", "channel": "fax"}]}, "unknown channel 'fax'"),
    ({"rules": [{"name": "x", "when": {"severity_at_least": "high"}, "channel": "dm"}]},
     "unknown condition(s) ['severity_at_least']"),
    ({"rules": [{"name": "x", "priority": 3, "channel": "dm"}]}, "unknown field(s) ['priority']"),
    ({"rules": [{"name": "x", "when": {"min_severity": "huge"}, "channel": "dm"}]}, "unknown severity 'huge'"),
    ({"rules": [{"name": "x", "when": {"personal_data": ["passport"]}, "channel": "dm"}]},
     "unknown value(s) ['passport']"),
    ({"rules": [{"name": "x", "when": {"public": "yes"}, "channel": "dm"}]}, "must be true or false"),
    ({"rules": [{"name": "x", "note": "call {customer}"}]}, "unknown placeholder(s) ['customer']"),
    ({"rules": [{"name": "x"}]}, "sets nothing"),
    ({"rules": [{"queue": "general"}]}, "every rule needs a name"),
    ({"queues": {"general": {"sla_minutes": 60, "timezone": "Mars/Olympus"}}}, "unknown time zone 'Mars/Olympus'"),
    ({"queues": {"general": {"sla_minutes": 0}}}, "sla_minutes must be a whole number"),
    ({"queues": {"general": {"sla_minutes": "4h"}}}, "sla_minutes must be a whole number"),
    ({"queues": {"general": {"sla_minutes": 60, "start": "18:00", "end": "08:00"}}}, "must be before end"),
    ({"queues": {"general": {"sla_minutes": 60, "start": "8am"}}}, "must read HH:MM"),
    ({"queues": {"general": {"sla_minutes": 60, "days": ["Monday"]}}}, "days must be a non-empty list"),
    ({"queues": {"general": {"sla": 60}}}, "unknown field(s) ['sla']"),
    ({"queues": {}}, "at least one [queues.NAME] table"),
    ({"default_queue": "vip"}, "default_queue: unknown queue 'vip'"),
    ({"routes": []}, "unknown top-level key(s) ['routes']"),
])
def test_bad_rules_are_refused_with_the_reason(edit: dict[str, Any], message: str) -> None:
    raw = tomllib.loads(DEFAULT_ROUTING.read_text())
    raw["queues"] = {"general": raw["queues"]["general"]}
    raw["rules"] = []
    raw.update(edit)
    with pytest.raises(ValueError) as err:
        parse_routing(raw)
    assert message in str(err.value), str(err.value)


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "routing.toml"
    path.write_text(DEFAULT_ROUTING.read_text().replace('queue = "social"', 'queue = "socail"'))
    with pytest.raises(UsageError) as err:
        load_routing(path)
    assert str(err.value) == (f"routing config {path}: rule 4 ('public complaint'): unknown queue 'socail' "
                              "(defined: general, social, escalations)")
    path.write_text(DEFAULT_ROUTING.read_text().replace("Europe/London", "Europe/Lodnon", 1))
    with pytest.raises(UsageError, match="queue 'general': unknown time zone 'Europe/Lodnon'"):
        load_routing(path)
    with pytest.raises(UsageError, match="routing config .*missing.toml"):
        load_routing(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[queues\n")
    with pytest.raises(UsageError, match="routing config"):
        load_routing(tmp_path / "bad.toml")


def test_results_carry_route_personal_data_and_history(scorer: Any) -> None:
    from service.contract.priority import load_config
    from service.contract.schemas import Message
    from service.contract.triage import score_messages

    text = "Where is my refund?? call me on 07911 123456"
    msgs = [Message(text=text, channel="twitter", created_at=SAT_NIGHT),
            Message(text=text, channel="email", created_at=SAT_NIGHT),
            Message(text="my parcel is late", channel="twitter", created_at=SAT_NIGHT),
            Message(text="my parcel is late", channel="twitter", created_at=SAT_NIGHT, prior_contacts=0)]
    res = score_messages(scorer, msgs, load_config(), history=[None, None, 3, 3])
    assert [r.exposes_personal_data for r in res] == [["phone"], ["phone"], [], []]
    assert res[0].private_followup is True  # a public post exposing a phone number must leave public view
    assert res[1].private_followup is bool(res[1].private_followup_probability >= scorer.meta.followup_threshold)
    assert res[0].is_complaint and res[2].is_complaint  # the tiny model (seed 0) calls these complaints
    assert "private follow-up needed: public post exposes phone" in res[0].priority_reasons
    assert res[0].route is not None and res[0].route.channel in ("dm", "callback")
    assert res[1].route is not None and res[1].route.channel == "email"
    # history counts when the caller did not say; an explicit prior_contacts (even 0) wins
    assert "3 prior contacts across channels" in res[2].priority_reasons
    assert res[2].route is not None and res[2].route.queue == "escalations"
    assert not any("prior contact" in r for r in res[3].priority_reasons)
    assert res[0].route.respond_by is not None and res[0].route.respond_by.endswith("+00:00")
