"""The small value syntaxes of the language: durations (`30m`, `1h30m`), clock times
(`09:00`, `24:00` as an end) and days (`2026-12-25`). Each parser returns None for text it
does not accept, so the caller names the place in its error. Pure."""

from __future__ import annotations

import re
from datetime import date

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNITS = (86400, 3600, 60, 1)
_CLOCK = re.compile(r"^(\d{2}):(\d{2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def duration(value: object) -> float | None:
    """Seconds in `30m`, `12h`, `1d`, `1h30m`, `45s` or `0`; a bare number is seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if text == "0":
        return 0.0
    found = _DURATION.match(text)
    if not text or not found:
        return None
    return float(sum(int(n) * unit for n, unit in zip(found.groups(), _UNITS, strict=True) if n))


def clock(text: str, *, end: bool = False) -> int | None:
    """Minutes since midnight of `HH:MM`; `24:00` only as the end of a range."""
    found = _CLOCK.match(text.strip())
    if not found:
        return None
    hours, minutes = int(found[1]), int(found[2])
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        return None
    return hours * 60 + minutes


def time_range(text: object) -> tuple[int, int] | None:
    """`HH:MM-HH:MM` as (start, end) minutes, the end excluded and after the start."""
    if not isinstance(text, str) or text.count("-") != 1:
        return None
    start_text, end_text = text.split("-")
    start, end = clock(start_text), clock(end_text, end=True)
    if start is None or end is None or end <= start:
        return None
    return start, end


def day(value: object) -> date | None:
    """A `YYYY-MM-DD` day (YAML may already have made it a date)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DAY.match(value.strip()):
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def clock_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
