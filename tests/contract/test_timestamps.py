"""The one timestamp reader (HTTP created_at and batch columns): every format exports really hold."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.contract.timestamps import TimestampParser

AUTO = TimestampParser()
UTC_2017 = datetime(2017, 10, 31, 22, 10, 47, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("2017-10-31T22:10:47Z", UTC_2017),                              # RFC 3339
    ("2017-10-31T23:10:47+01:00", UTC_2017),                         # ISO 8601 with an offset
    ("2017-10-31 22:10:47", UTC_2017),                               # no offset: UTC by default
    ("20171031T221047Z", UTC_2017),                                  # ISO 8601 basic format
    ("2017-10-31T22:10:47.000Z", UTC_2017),
    ("Tue Oct 31 22:10:47 +0000 2017", UTC_2017),                    # Twitter/X
    ("Tue Oct 31 17:10:47 -0500 2017", UTC_2017),
    ("Tue, 31 Oct 2017 22:10:47 +0000", UTC_2017),                   # RFC 2822
    ("31 Oct 2017 23:10:47 +0100", UTC_2017),
    ("Tue, 31 Oct 2017 22:10:47 GMT", UTC_2017),
    (1509487847, UTC_2017), (1509487847.0, UTC_2017), ("1509487847", UTC_2017),  # Unix seconds
    (1509487847000, UTC_2017), ("1509487847000", UTC_2017),          # Unix milliseconds
    (" 1509487847 ", UTC_2017),
    ("10/31/2017 22:10:47", UTC_2017), ("31/10/2017 22:10:47", UTC_2017),  # unambiguous slashed dates
    ("10/31/2017 10:10:47 PM", UTC_2017),
    (UTC_2017, UTC_2017), (datetime(2017, 10, 31, 22, 10, 47), UTC_2017),  # Parquet timestamps
])
def test_every_format_reads_to_the_same_instant(value: object, expected: datetime) -> None:
    got = AUTO.parse(value)
    assert got == expected and got.tzinfo is not None


def test_seconds_and_milliseconds_are_told_apart_by_magnitude() -> None:
    assert AUTO.parse(99_999_999_999) == datetime(5138, 11, 16, 9, 46, 39, tzinfo=UTC)  # just under 1e11: seconds
    assert AUTO.parse(100_000_000_000) == datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)   # 1e11: milliseconds
    assert AUTO.parse(-86_400) == datetime(1969, 12, 31, tzinfo=UTC)


def test_us_dates_need_the_format_or_an_unambiguous_day() -> None:
    assert AUTO.parse("2/24/2015 11:35") == datetime(2015, 2, 24, 11, 35, tzinfo=UTC)
    assert AUTO.parse("5/5/2015 11:35") == datetime(2015, 5, 5, 11, 35, tzinfo=UTC)  # same either way
    with pytest.raises(ValueError, match=r"ambiguous .* --created-at-format such as '%m/%d/%Y %H:%M'"):
        AUTO.parse("2/3/2015 11:35")
    us = TimestampParser("%m/%d/%Y %H:%M")
    assert us.parse("2/3/2015 11:35") == datetime(2015, 2, 3, 11, 35, tzinfo=UTC)
    assert us.parse(1509487847) == UTC_2017  # numbers stay Unix times whatever the format
    with pytest.raises(ValueError, match="does not match --created-at-format"):
        us.parse("2015-02-03T11:35:00")


def test_input_timezone_applies_to_naive_times_only() -> None:
    ny = TimestampParser(timezone="America/New_York")
    assert ny.parse("2015-02-24 11:35") == datetime(2015, 2, 24, 11, 35, tzinfo=ZoneInfo("America/New_York"))
    assert ny.parse("2015-02-24 11:35").astimezone(UTC).hour == 16
    assert ny.parse("2015-02-24T11:35:00+00:00").utcoffset() == timedelta(0)  # an explicit offset wins
    assert ny.parse(1509487847) == UTC_2017  # a Unix time is an instant
    fixed = TimestampParser("%d.%m.%Y %H:%M", "Europe/Berlin").parse("24.02.2015 11:35")
    assert fixed.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(("value", "needle"), [
    ("yesterday", "created_at must be a time"), ("2017-10-31", "no time of day"), ("2/24/2015", "no time of day"),
    (date(2017, 10, 31), "no time of day"), ("13/13/2015 10:00", "not a real date"), ("2/30/2015 10:00", "not a real"),
    ("2/24/2015 13:35 PM", "1-12 with AM/PM"), (float("nan"), "finite"), (float("inf"), "finite"),
    (10**20, "out of range"), (True, "got bool"), (["2017"], "got list"), ("", "created_at must be a time"),
    ("x" * 10_000, "..."),
])
def test_unreadable_times_say_why_without_echoing_the_input(value: object, needle: str) -> None:
    with pytest.raises(ValueError) as exc:
        AUTO.parse(value)
    assert needle in str(exc.value) and len(str(exc.value)) < 300


@pytest.mark.parametrize(("fmt", "zone", "needle"), [
    ("mm/dd/yyyy", None, "no % directive"), (None, "Mars/Olympus", "unknown input time zone"),
    (None, "../etc", "unknown input time zone"),
])
def test_bad_settings_are_refused(fmt: str | None, zone: str | None, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        TimestampParser(fmt, zone)
