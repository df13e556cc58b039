"""Transparent priority rules: model outputs + message metadata → priority 0-100 and reasons.

Weights live in a TOML file (``service/contract/priority.toml`` by default, ``CT_PRIORITY_CONFIG``
or ``--priority-config`` to override). The same inputs always give the same priority: nothing here
reads the clock; the caller passes the time the message was created or received. Whether a message
is a complaint (which gates the metadata boosts) is decided by the caller with the bundle's
``complaint_threshold`` (:mod:`service.contract.triage`), not configured here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from model.labels import PUBLIC_CHANNELS, SEVERITY_LABELS
from service.errors import UsageError

DEFAULT_CONFIG = Path(__file__).with_name("priority.toml")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def check_timezone(name: str) -> None:
    """ValueError naming the zone unless ``name`` is a known IANA time zone."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: not a zone name at all ("../x", "")
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/London)") from None


@dataclass(frozen=True)
class BusinessHours:
    """Opening days and hours in one time zone."""

    timezone: str = "Europe/London"
    days: tuple[str, ...] = DAYS[:5]
    start: time = time(8, 0)
    end: time = time(18, 0)

    def __post_init__(self) -> None:
        check_timezone(self.timezone)
        if unknown := set(self.days) - set(DAYS):
            raise ValueError(f"unknown business days {sorted(unknown)}; use {', '.join(DAYS)}")

    def is_open(self, when: datetime) -> bool:
        local = self.localize(when)
        return DAYS[local.weekday()] in self.days and self.start <= local.time() < self.end

    def localize(self, when: datetime) -> datetime:
        aware = when if when.tzinfo else when.replace(tzinfo=UTC)
        return aware.astimezone(ZoneInfo(self.timezone))


@dataclass(frozen=True)
class PriorityConfig:
    """Weights of every rule (see priority.toml for the documented defaults)."""

    severity_points: dict[str, float] = field(default_factory=lambda: dict(zip(SEVERITY_LABELS, (0, 20, 40, 60, 85))))
    private_followup: float = 8
    public_channel: float = 4
    verified_author: float = 3
    promoted: float = 15
    prior_contact_each: float = 4
    prior_contact_max: float = 12
    outside_business_hours: float = 5
    reach: tuple[tuple[int, float], ...] = ((10_000, 5), (100_000, 10), (1_000_000, 15))
    hours: BusinessHours = BusinessHours()

    def __post_init__(self) -> None:
        if set(self.severity_points) != set(SEVERITY_LABELS):
            raise ValueError(f"severity_points must name exactly {', '.join(SEVERITY_LABELS)}")


def _clock(text: str) -> time:
    try:
        hh, mm = text.split(":")
        return time(int(hh), int(mm))
    except ValueError:
        raise ValueError(f"business hours must read HH:MM, got {text!r}") from None


def load_config(path: str | Path | None = None, *, timezone_name: str | None = None) -> PriorityConfig:
    """Read and check a priority TOML file (defaults for anything it leaves out); a file that cannot
    be read or holds a bad value, or an unknown ``timezone_name``, is a :class:`UsageError`."""
    if timezone_name is not None:
        try:
            check_timezone(timezone_name)
        except ValueError as exc:
            raise UsageError(f"business-hours time zone: {exc}") from None
    where = Path(path or DEFAULT_CONFIG)
    try:
        return _parse(tomllib.loads(where.read_text(encoding="utf-8")), timezone_name)
    except (OSError, tomllib.TOMLDecodeError, ValueError, TypeError, KeyError) as exc:
        raise UsageError(f"priority config {where}: {exc}") from None


def _parse(raw: dict[str, Any], timezone_name: str | None) -> PriorityConfig:
    if "complaint_threshold" in raw:  # moved into the bundle: silently ignoring a changed value would mislead
        raise ValueError("complaint_threshold is no longer read here: the bundle's complaint_threshold decides "
                         "is_complaint and gates the boosts (see GET /info); remove the line")
    boosts = dict(raw.get("boosts", {}))
    tiers = tuple(sorted((int(t["min_followers"]), float(t["points"])) for t in boosts.pop("reach", [])))
    bh = raw.get("business_hours", {})
    hours = BusinessHours(timezone=timezone_name or bh.get("timezone", "Europe/London"),
                          days=tuple(bh.get("days", DAYS[:5])), start=_clock(bh.get("start", "08:00")),
                          end=_clock(bh.get("end", "18:00")))
    kwargs: dict[str, Any] = {k: float(v) for k, v in boosts.items()}
    if "severity_points" in raw:
        kwargs["severity_points"] = {k: float(v) for k, v in raw["severity_points"].items()}
    if tiers:
        kwargs["reach"] = tiers
    return PriorityConfig(hours=hours, **kwargs)


@dataclass(frozen=True)
class Signals:
    """Everything a priority decision depends on."""

    severity_scores: dict[str, float]
    is_complaint: bool  # the bundle's decision (complaint_probability >= complaint_threshold)
    private_followup: bool
    private_followup_probability: float
    channel: str | None = None
    followers: int | None = None
    verified: bool | None = None
    promoted: bool = False
    prior_contacts: int = 0
    when: datetime | None = None  # created_at, else the time it was received; None = unknown
    #: kinds of personal data a public post exposes (they make the follow-up private)
    personal_data: tuple[str, ...] = ()


def _followers(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M".replace(".0M", "M")
    return f"{n / 1000:.0f}k" if n >= 1000 else str(n)


def _local_time(hours: BusinessHours, when: datetime | None) -> datetime | None:
    """``when`` in the business time zone, or None when unknown or not representable there
    (e.g. ``0001-01-01T00:00:00+14:00`` would fall before year 1: OverflowError)."""
    if when is None:
        return None
    try:
        return hours.localize(when)
    except OverflowError:
        return None


def priority(sig: Signals, cfg: PriorityConfig) -> tuple[int, list[str]]:
    """Priority 0-100 and the human-readable reasons that raised it."""
    top = max(sig.severity_scores, key=sig.severity_scores.__getitem__)
    score = sum(cfg.severity_points[k] * p for k, p in sig.severity_scores.items())
    reasons = [f"severity {top} (p={sig.severity_scores[top]:.2f})"]
    if not sig.is_complaint:  # metadata boosts only for complaints: a viral thank-you stays low
        return int(round(min(100.0, max(0.0, score)))), reasons
    boosts: list[tuple[float, str]] = []
    if sig.private_followup and sig.personal_data:
        boosts.append((cfg.private_followup, f"private follow-up needed: public post exposes "
                                             f"{', '.join(sig.personal_data)}"))
    elif sig.private_followup:
        boosts.append((cfg.private_followup, f"private follow-up needed (p={sig.private_followup_probability:.2f})"))
    if sig.channel in PUBLIC_CHANNELS:
        boosts.append((cfg.public_channel, f"public channel ({sig.channel})"))
    tier = max((pts for low, pts in cfg.reach if (sig.followers or 0) >= low), default=0.0)
    if tier:
        boosts.append((tier, f"author reach {_followers(int(sig.followers or 0))} followers"))
    if sig.verified:
        boosts.append((cfg.verified_author, "verified author"))
    if sig.promoted:
        boosts.append((cfg.promoted, "paid/promoted post"))
    if sig.prior_contacts > 0:
        plural = "s" if sig.prior_contacts != 1 else ""
        boosts.append((min(cfg.prior_contact_max, cfg.prior_contact_each * sig.prior_contacts),
                       f"{sig.prior_contacts} prior contact{plural} across channels"))
    local = _local_time(cfg.hours, sig.when)
    if local is not None and not cfg.hours.is_open(local):
        boosts.append((cfg.outside_business_hours,
                       f"received outside business hours ({local:%a %H:%M} {cfg.hours.timezone})"))
    for points, reason in boosts:
        if points > 0:
            score += points
            reasons.append(reason)
    return int(round(min(100.0, max(0.0, score)))), reasons
