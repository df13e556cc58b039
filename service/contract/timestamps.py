"""The one timestamp reader of the scoring contract (HTTP ``created_at`` and batch columns alike).

:meth:`TimestampParser.parse` turns what exports really hold into an aware :class:`datetime`:

- a ``datetime`` (a Parquet timestamp column), or a JSON/Parquet number, or a numeric string:
  Unix time, **seconds or milliseconds told apart by magnitude**: ``abs(value) >= 1e11`` is
  milliseconds (1e11 s is the year 5138; 1e11 ms is March 1973), so any real time after 1973 is
  read right either way;
- ISO 8601 / RFC 3339 (``2026-03-07T23:10:00Z``, ``2026-03-07 23:10:00+01:00``, no offset);
- Twitter/X's own format (``Tue Oct 31 22:10:47 +0000 2017``);
- RFC 2822 (``Tue, 31 Oct 2017 22:10:47 +0000``, e-mail and RSS);
- slashed dates ``M/D/YYYY`` or ``D/M/YYYY`` with an optional ``H:MM[:SS]`` and ``AM``/``PM``,
  **only when the order is unambiguous** (one of the first two numbers is over 12). A file uses
  one convention, so a row whose order is unambiguous can only be read one way; ``3/4/2015`` is
  ambiguous and refused with a hint to pass the format explicitly;
- with ``fmt`` (``--created-at-format`` / ``CT_CREATED_AT_FORMAT``): strings are read with
  :func:`datetime.strptime` and that format only (numbers and datetimes are still accepted).

A time without an offset is in ``timezone`` (``--input-timezone`` / ``CT_INPUT_TIMEZONE``; default
UTC). A date without a time of day is refused: business hours cannot be judged from it.
Problems are :class:`ValueError` whose text is the reason shown to the user.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
_DATE_ONLY = re.compile(r"\d{4}-?\d{2}-?\d{2}")
_SLASHED = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?")
_TWITTER = "%a %b %d %H:%M:%S %z %Y"
MS_FROM = 1e11  # |epoch| at or above this is milliseconds (see the module docstring)
RULE = "created_at must be a time (ISO 8601, RFC 2822, Twitter, Unix s/ms"  # the reason's stable part


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class TimestampParser:
    """Reads timestamps as the module docstring says; ``fmt`` and ``timezone`` are checked here."""

    fmt: str | None = None
    timezone: str | None = None

    def __post_init__(self) -> None:
        if self.fmt is not None and "%" not in self.fmt:
            raise ValueError(f"created-at format {self.fmt!r} has no % directive (e.g. '%m/%d/%Y %H:%M')")
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown input time zone {self.timezone!r} (use an IANA name such as "
                                 "America/New_York)") from None

    @property
    def zone(self) -> tzinfo:
        return ZoneInfo(self.timezone) if self.timezone else UTC

    def parse(self, value: Any) -> datetime:
        """``value`` as an aware datetime; ValueError with the reason."""
        if isinstance(value, datetime):
            return self._aware(value)
        if isinstance(value, date):
            raise ValueError(f"created_at has a date but no time of day, got {_short(value)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return self._epoch(value)
        if not isinstance(value, str):
            raise ValueError(f"{self._rule()}), got {type(value).__name__}")
        text = value.strip()
        if self.fmt is not None:
            return self._strptime(text, value)
        if _NUMBER.fullmatch(text):
            return self._epoch(float(text))
        for read in (self._iso, self._twitter, self._rfc2822, self._slashed):
            when = read(text)
            if when is not None:
                return self._aware(when)
        raise ValueError(f"{self._rule()}), got {_short(value)}")

    def _rule(self) -> str:
        return RULE + (f" or {self.fmt!r}" if self.fmt else ", or pass --created-at-format")

    def _aware(self, when: datetime) -> datetime:
        return when if when.tzinfo is not None else when.replace(tzinfo=self.zone)

    def _epoch(self, value: float) -> datetime:
        if not math.isfinite(value):
            raise ValueError(f"created_at must be a finite Unix time, got {_short(value)}")
        seconds = value / 1000 if abs(value) >= MS_FROM else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"created_at Unix time out of range, got {_short(value)}") from None

    def _strptime(self, text: str, value: str) -> datetime:
        if _NUMBER.fullmatch(text) and "%s" not in self.fmt:  # type: ignore[operator]
            return self._epoch(float(text))  # epochs are unambiguous whatever the format says
        try:
            return self._aware(datetime.strptime(text, self.fmt))  # type: ignore[arg-type]
        except ValueError:
            raise ValueError(f"created_at does not match --created-at-format {self.fmt!r}, got {_short(value)}") \
                from None

    @staticmethod
    def _iso(text: str) -> datetime | None:
        if _DATE_ONLY.fullmatch(text):
            raise ValueError(f"created_at has a date but no time of day, got {_short(text)}")
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None

    @staticmethod
    def _twitter(text: str) -> datetime | None:
        try:
            return datetime.strptime(text, _TWITTER)
        except ValueError:
            return None

    @staticmethod
    def _rfc2822(text: str) -> datetime | None:
        if "," not in text and not re.match(r"\d{1,2} [A-Za-z]{3} \d{4}", text):
            return None  # parsedate is lenient: only try what looks like an RFC 2822 date
        try:
            return parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None

    @staticmethod
    def _slashed(text: str) -> datetime | None:
        m = _SLASHED.fullmatch(text)
        if m is None:
            return None
        a, b, year = int(m[1]), int(m[2]), int(m[3])
        if m[4] is None:
            raise ValueError(f"created_at has a date but no time of day, got {_short(text)}")
        if a <= 12 and b <= 12 and a != b:
            raise ValueError("created_at is ambiguous (month/day or day/month?), pass --created-at-format "
                             f"such as '%m/%d/%Y %H:%M', got {_short(text)}")
        month, day = (a, b) if b > 12 or a == b else (b, a)
        hour, minute, second = int(m[4]), int(m[5]), int(m[6] or 0)
        if m[7]:
            if not 1 <= hour <= 12:
                raise ValueError(f"created_at hour must be 1-12 with AM/PM, got {_short(text)}")
            hour = hour % 12 + (12 if m[7].lower() == "pm" else 0)
        try:
            return datetime(year, month, day, hour, minute, second)
        except ValueError as exc:
            raise ValueError(f"created_at is not a real date/time ({exc}), got {_short(text)}") from None
