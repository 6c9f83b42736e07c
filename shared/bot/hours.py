"""Business hours: open or closed at an instant, the next opening, the week in words. Pure.

Ranges are wall-clock times in the definition's time zone, so a shop open 09:00-13:00 is
open 09:00-13:00 local time on both sides of a daylight-saving change. A range that starts
at a time the clock skips (02:30 on the night clocks go forward) opens when the clock
jumps past it; a time the clock repeats counts as its first occurrence."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from shared.bot.model import BusinessHours
from shared.bot.phrases import Phrases, phrases
from shared.bot.values import clock_text

_DASH = "\u2013"  # an en dash, as printed hours have it
_SEARCH_DAYS = 400  # holidays can close for long; beyond a year, "never" is the answer


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local(spec: BusinessHours, at: float) -> datetime:
    return datetime.fromtimestamp(at, _zone(spec.timezone))


def is_open(spec: BusinessHours, at: float) -> bool:
    when = local(spec, at)
    if when.date().isoformat() in spec.holidays:
        return False
    minute = when.hour * 60 + when.minute
    return any(start <= minute < end for start, end in spec.weekly[when.weekday()])


def next_open(spec: BusinessHours, at: float) -> datetime | None:
    """The next instant the business is open (local time); `at` itself when open; None
    when it never opens again within a year."""
    if is_open(spec, at):
        return local(spec, at)
    today = local(spec, at).date()
    for offset in range(_SEARCH_DAYS):
        day = today + timedelta(days=offset)
        if day.isoformat() in spec.holidays:
            continue
        for start, _ in spec.weekly[day.weekday()]:
            opens = _instant(spec, day, start)
            if opens.timestamp() > at:
                return opens
    return None


def _instant(spec: BusinessHours, day: date, minute: int) -> datetime:
    """The first instant at which the wall clock of `day` shows `minute` or later."""
    zone = _zone(spec.timezone)
    if minute >= 24 * 60:
        day, minute = day + timedelta(days=1), minute - 24 * 60
    wall = datetime.combine(day, time(minute // 60, minute % 60))
    first = wall.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
        return first.astimezone(UTC).astimezone(zone)
    # In a gap: the clock jumps over `wall`. Bisect the instants around it for the jump.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first.astimezone(UTC)
    if low > high:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0).astimezone(zone)


# --- in words -------------------------------------------------------------------------------


def describe_week(spec: BusinessHours, language: str) -> str:
    """`Monday to Friday 09:00-13:00 and 15:00-19:00, Saturday 09:00-13:00` (with en dashes)."""
    words = phrases(language)
    runs: list[tuple[int, int]] = []  # (first day, last day) with the same ranges
    for index, ranges in enumerate(spec.weekly):
        if not ranges:
            continue
        if runs and runs[-1][1] == index - 1 and spec.weekly[runs[-1][0]] == ranges:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    if len(runs) == 1 and runs[0] == (0, 6):
        return f"{words.every_day} {_ranges(spec.weekly[0], words)}"
    parts = []
    for first, last in runs:
        if first == last:
            days = words.days[first]
        elif last == first + 1:
            days = words.pair.format(first=words.days[first], last=words.days[last])
        else:
            days = words.span.format(first=words.days[first], last=words.days[last])
        parts.append(f"{days} {_ranges(spec.weekly[first], words)}")
    return ", ".join(parts)


def _ranges(ranges: tuple[tuple[int, int], ...], words: Phrases) -> str:
    if ranges == ((0, 24 * 60),):
        return words.all_day
    texts = [f"{clock_text(start)}{_DASH}{clock_text(end)}" for start, end in ranges]
    if len(texts) == 1:
        return texts[0]
    return words.both.format(a=", ".join(texts[:-1]), b=texts[-1])


def describe_next_open(spec: BusinessHours, at: float, language: str) -> str:
    """`now`, `today at 15:00`, `tomorrow at 09:00`, `Monday at 09:00`, or beyond a week
    `Monday 4 January at 09:00`; "" when it never opens."""
    opens = next_open(spec, at)
    if opens is None:
        return ""
    words = phrases(language)
    if opens.timestamp() <= at:
        return words.now
    days = (opens.date() - local(spec, at).date()).days
    weekday = words.days[opens.weekday()]
    if days == 0:
        day = words.today
    elif days == 1:
        day = words.tomorrow
    elif days < 7:
        day = weekday
    else:
        day = words.date.format(weekday=weekday, day=opens.day, month=words.months[opens.month - 1])
    return words.at.format(day=day, time=f"{opens.hour:02d}:{opens.minute:02d}")
