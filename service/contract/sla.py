"""SLA clocks: a time plus N minutes counted only while a queue's desk is open.

Business hours are wall-clock times in the queue's time zone (``zoneinfo``; the ``tzdata``
package supplies the database where the system has none), so a desk that opens at 08:00
opens at 08:00 local time on both sides of a daylight-saving change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from service.contract.priority import DAYS

_MAX_DAYS = 400  # a queue opens at least once a week: far more than any SLA needs


def _open_window(day: datetime, days: tuple[str, ...], start: int, end: int) -> tuple[datetime, datetime] | None:
    """The open interval of ``day``'s local date (naive local datetimes), or None when closed that day."""
    if DAYS[day.weekday()] not in days:
        return None
    midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + timedelta(minutes=start), midnight + timedelta(minutes=end)


def respond_by(when: datetime, sla_minutes: int, timezone: str, days: tuple[str, ...], start: int,
               end: int) -> tuple[datetime, bool] | None:
    """The deadline (aware, in ``timezone``) and whether ``when`` fell outside business hours;
    None when ``when`` cannot be represented there (the edges of the calendar)."""
    tz = ZoneInfo(timezone)
    try:
        aware = when if when.tzinfo else when.replace(tzinfo=UTC)
        local = aware.astimezone(tz).replace(tzinfo=None)  # wall clock: opening hours are wall-clock times
        remaining = timedelta(minutes=sla_minutes)
        cursor, outside = local, None
        for _ in range(_MAX_DAYS):
            window = _open_window(cursor, days, start, end)
            if window is not None and cursor < window[1]:
                begin = max(cursor, window[0])
                if outside is None:
                    outside = begin > local
                if begin + remaining <= window[1]:
                    return (begin + remaining).replace(tzinfo=tz), outside
                remaining -= window[1] - begin
            cursor = cursor.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    except (OverflowError, ValueError):
        return None
    return None
