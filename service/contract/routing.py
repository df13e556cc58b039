"""Routing: which queue a scored message goes to, how the team answers it, and by when.

Rules live in a TOML file (``service/contract/routing.toml`` by default, ``CT_ROUTING_CONFIG`` or
``--routing-config`` to override), read and checked once at start-up by :func:`load_routing`: an
unknown queue, channel, condition or placeholder, a bad time zone, clock or SLA is a
:class:`~service.errors.UsageError` naming the file, the rule and the field.

A rule matches when all its ``when`` conditions hold; the first matching rule that names a
``queue`` decides the queue, the first that names a ``channel`` decides the channel (defaults
otherwise). ``route.reasons`` lists the matching rules' notes (and the names of note-less rules
that decided something), then the SLA. ``respond_by`` is the message's time (``created_at``,
else the time it was received) plus the queue's SLA minutes counted within the queue's business
hours, in the queue's time zone. Nothing here reads the clock.
"""

from __future__ import annotations

import functools
import string
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from model.labels import CHANNELS, PUBLIC_CHANNELS, SENTIMENT_LABELS, SEVERITY_LABELS
from service.contract.pii import KINDS
from service.contract.priority import DAYS, check_timezone
from service.contract.schemas import ROUTE_CHANNELS
from service.contract.sla import respond_by
from service.errors import UsageError

DEFAULT_ROUTING = Path(__file__).with_name("routing.toml")
#: condition name → what its value must be (checked at load)
CONDITIONS = ("severity", "min_severity", "sentiment", "is_complaint", "private_followup", "personal_data",
              "language", "channel", "public", "min_prior_contacts")
RULE_FIELDS = ("name", "when", "queue", "channel", "note")
PLACEHOLDERS = ("personal_data", "prior_contacts", "severity", "channel", "queue")
_MAX_SLA_MINUTES = 60 * 24 * 30


@dataclass(frozen=True)
class Queue:
    """A desk: its business hours (minutes after local midnight, end may be 1440) and its SLA."""

    name: str
    sla_minutes: int
    timezone: str = "Europe/London"
    days: tuple[str, ...] = DAYS[:5]
    start: int = 8 * 60
    end: int = 18 * 60

    def describe(self) -> str:
        """``Mon-Fri 08:00-18:00 Europe/London``."""
        idx = [DAYS.index(d) for d in self.days]
        contiguous = idx == list(range(idx[0], idx[-1] + 1))
        days = "daily" if len(idx) == 7 else f"{self.days[0]}-{self.days[-1]}" if contiguous else ",".join(self.days)
        return f"{days} {_hhmm(self.start)}-{_hhmm(self.end)} {self.timezone}"


@dataclass(frozen=True)
class Rule:
    """Conditions (all must hold) and what the rule sets."""

    name: str
    when: dict[str, Any]
    queue: str | None = None
    channel: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class RoutingConfig:
    """Queues, rules (in file order) and the defaults used when no rule decides."""

    queues: dict[str, Queue]
    rules: tuple[Rule, ...] = ()
    default_queue: str = "general"
    default_channel: str = "public_reply"
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
class RouteSignals:
    """What routing looks at: the result's decisions and the message's metadata."""

    severity: str
    sentiment: str
    is_complaint: bool
    private_followup: bool
    personal_data: tuple[str, ...] = ()
    language: str = "und"
    channel: str | None = None
    prior_contacts: int = 0
    when: datetime | None = None


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _clock(text: Any, what: str) -> int:
    try:
        hh, mm = str(text).split(":")
        h, m = int(hh), int(mm)
    except ValueError:
        raise ValueError(f"{what} must read HH:MM, got {text!r}") from None
    if not (0 <= h <= 24 and 0 <= m < 60) or h * 60 + m > 1440:
        raise ValueError(f"{what} must be a time from 00:00 to 24:00, got {text!r}")
    return h * 60 + m


def _queue(name: str, raw: Any) -> Queue:
    where = f"queue {name!r}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table")
    unknown = set(raw) - {"sla_minutes", "timezone", "days", "start", "end"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} (allowed: sla_minutes, timezone, days, start, end)")
    sla = raw.get("sla_minutes")
    if isinstance(sla, bool) or not isinstance(sla, int) or not 0 < sla <= _MAX_SLA_MINUTES:
        raise ValueError(f"{where}: sla_minutes must be a whole number of minutes from 1 to {_MAX_SLA_MINUTES}, "
                         f"got {sla!r}")
    tz = raw.get("timezone", "Europe/London")
    try:
        check_timezone(str(tz))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    days = raw.get("days", list(DAYS[:5]))
    if not isinstance(days, list) or not days or set(days) - set(DAYS):
        raise ValueError(f"{where}: days must be a non-empty list of {', '.join(DAYS)}, got {days!r}")
    start, end = _clock(raw.get("start", "08:00"), f"{where} start"), _clock(raw.get("end", "18:00"), f"{where} end")
    if start >= end:
        raise ValueError(f"{where}: start {_hhmm(start)} must be before end {_hhmm(end)}")
    return Queue(name=name, sla_minutes=sla, timezone=str(tz), days=tuple(d for d in DAYS if d in days),
                 start=start, end=end)


def _list_of(value: Any, allowed: tuple[str, ...] | None, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a non-empty list of strings, got {value!r}")
    if allowed is not None and (bad := [v for v in value if v not in allowed]):
        raise ValueError(f"{what}: unknown value(s) {bad} (allowed: {', '.join(allowed)})")
    return value


def _condition(name: str, value: Any, where: str) -> Any:
    what = f"{where} when.{name}"
    if name in ("is_complaint", "private_followup", "public"):
        if not isinstance(value, bool):
            raise ValueError(f"{what} must be true or false, got {value!r}")
        return value
    if name == "personal_data":
        return value if isinstance(value, bool) else _list_of(value, KINDS, what)
    if name == "min_prior_contacts":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{what} must be a whole number >= 0, got {value!r}")
        return value
    if name == "min_severity":
        if value not in SEVERITY_LABELS:
            raise ValueError(f"{what}: unknown severity {value!r} (allowed: {', '.join(SEVERITY_LABELS)})")
        return value
    allowed = {"severity": SEVERITY_LABELS, "sentiment": SENTIMENT_LABELS, "channel": CHANNELS}.get(name)
    return _list_of(value, allowed, what)  # language: any codes (ISO 639-1, "und")


def _rule(i: int, raw: Any, queues: dict[str, Queue]) -> Rule:
    where = f"rule {i + 1}" + (f" ({raw['name']!r})" if isinstance(raw, dict) and "name" in raw else "")
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table")
    if unknown := set(raw) - set(RULE_FIELDS):
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} (allowed: {', '.join(RULE_FIELDS)})")
    if not isinstance(raw.get("name"), str) or not raw["name"].strip():
        raise ValueError(f"{where}: every rule needs a name")
    when = raw.get("when", {})
    if not isinstance(when, dict):
        raise ValueError(f"{where}: when must be a table of conditions")
    if unknown := set(when) - set(CONDITIONS):
        raise ValueError(f"{where}: unknown condition(s) {sorted(unknown)} (allowed: {', '.join(CONDITIONS)})")
    queue, channel, note = raw.get("queue"), raw.get("channel"), raw.get("note")
    if queue is not None and queue not in queues:
        raise ValueError(f"{where}: unknown queue {queue!r} (defined: {', '.join(queues)})")
    if channel is not None and channel not in ROUTE_CHANNELS:
        raise ValueError(f"{where}: unknown channel {channel!r} (allowed: {', '.join(ROUTE_CHANNELS)})")
    if note is not None:
        _check_note(note, where)
    if queue is None and channel is None and note is None:
        raise ValueError(f"{where}: sets nothing (give it a queue, a channel or a note)")
    return Rule(name=raw["name"], when={k: _condition(k, v, where) for k, v in when.items()},
                queue=queue, channel=channel, note=note)


def _check_note(note: Any, where: str) -> None:
    if not isinstance(note, str):
        raise ValueError(f"{where}: note must be a string")
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(note) if f is not None}
    except ValueError as exc:
        raise ValueError(f"{where}: note is not a valid template: {exc}") from None
    if bad := sorted(names - set(PLACEHOLDERS)):
        raise ValueError(f"{where}: unknown placeholder(s) {bad} in note (allowed: "
                         f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})")


def parse_routing(raw: dict[str, Any], source: str = "") -> RoutingConfig:
    """A checked :class:`RoutingConfig` from a parsed TOML document (ValueError with the reason)."""
    if unknown := set(raw) - {"default_queue", "default_channel", "queues", "rules"}:
        raise ValueError(f"unknown top-level key(s) {sorted(unknown)} "
                         "(allowed: default_queue, default_channel, queues, rules)")
    if not isinstance(raw.get("queues"), dict) or not raw["queues"]:
        raise ValueError("at least one [queues.NAME] table is required")
    queues = {name: _queue(name, q) for name, q in raw["queues"].items()}
    default_queue = raw.get("default_queue", next(iter(queues)))
    if default_queue not in queues:
        raise ValueError(f"default_queue: unknown queue {default_queue!r} (defined: {', '.join(queues)})")
    default_channel = raw.get("default_channel", "public_reply")
    if default_channel not in ROUTE_CHANNELS:
        raise ValueError(f"default_channel: unknown channel {default_channel!r} (allowed: {', '.join(ROUTE_CHANNELS)})")
    rules = raw.get("rules", [])
    if not isinstance(rules, list):
        raise ValueError("rules must be an array of [[rules]] tables")
    return RoutingConfig(queues=queues, rules=tuple(_rule(i, r, queues) for i, r in enumerate(rules)),
                         default_queue=default_queue, default_channel=default_channel, source=source)


@functools.cache
def default_routing() -> RoutingConfig:
    """The shipped rules (routing.toml), read once."""
    return load_routing(None)


def load_routing(path: str | Path | None = None) -> RoutingConfig:
    """Read and check a routing file; any problem is a :class:`UsageError` naming the file."""
    where = Path(path or DEFAULT_ROUTING)
    try:
        return parse_routing(tomllib.loads(where.read_text(encoding="utf-8")), str(where))
    except (OSError, tomllib.TOMLDecodeError, ValueError, TypeError) as exc:
        raise UsageError(f"routing config {where}: {exc}") from None


# --------------------------------------------------------------------------------------------- evaluation


def _holds(name: str, want: Any, sig: RouteSignals) -> bool:
    if name == "severity":
        return sig.severity in want
    if name == "min_severity":
        return SEVERITY_LABELS.index(sig.severity) >= SEVERITY_LABELS.index(want)
    if name == "sentiment":
        return sig.sentiment in want
    if name == "is_complaint":
        return sig.is_complaint is want
    if name == "private_followup":
        return sig.private_followup is want
    if name == "personal_data":
        return bool(sig.personal_data) is want if isinstance(want, bool) else bool(set(want) & set(sig.personal_data))
    if name == "language":
        return sig.language in want
    if name == "channel":
        return sig.channel in want
    if name == "public":
        return (sig.channel in PUBLIC_CHANNELS) is want
    return sig.prior_contacts >= want  # min_prior_contacts


def matches(rule: Rule, sig: RouteSignals) -> bool:
    """All of the rule's conditions hold (a rule without conditions always matches)."""
    return all(_holds(name, want, sig) for name, want in rule.when.items())


def route(sig: RouteSignals, cfg: RoutingConfig) -> tuple[str, str, datetime | None, list[str]]:
    """Queue, channel, respond-by time (None when the message's time is unknown) and the reasons."""
    queue = channel = None
    fired: list[Rule] = []  # rules with a note, and rules that decided the queue or the channel
    for rule in cfg.rules:
        if matches(rule, sig):
            decides = (queue is None and rule.queue is not None) or (channel is None and rule.channel is not None)
            if decides or rule.note:
                fired.append(rule)
            queue = queue or rule.queue
            channel = channel or rule.channel
    queue, channel = queue or cfg.default_queue, channel or cfg.default_channel
    values = {"personal_data": ", ".join(sig.personal_data) or "none", "prior_contacts": sig.prior_contacts,
              "severity": sig.severity, "channel": sig.channel or "unknown channel", "queue": queue}
    reasons = [f"{r.name}: {r.note.format(**values)}" if r.note else r.name for r in fired]
    deadline = None if channel == "none" else _deadline(sig.when, cfg.queues[queue], reasons)
    return queue, channel, deadline, reasons


def _deadline(when: datetime | None, q: Queue, reasons: list[str]) -> datetime | None:
    if when is None:
        reasons.append("respond_by unknown: the message has no created_at")
        return None
    got = respond_by(when, q.sla_minutes, q.timezone, q.days, q.start, q.end)
    if got is None:
        reasons.append("respond_by unknown: created_at is outside the calendar")
        return None
    deadline, outside = got
    if outside:
        reasons.append(f"queue {q.name}: received outside business hours ({q.describe()}); "
                       f"{q.sla_minutes} business minutes counted from opening")
    else:
        reasons.append(f"queue {q.name}: respond within {q.sla_minutes} business minutes ({q.describe()})")
    return deadline
