"""The definition's settings: business hours, the opt-out keywords, the LLM's limits."""

from __future__ import annotations

from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.bot import limits
from shared.bot.model import BusinessHours, LLMSettings, OptOutKeywords, Template, Text, TextMessage
from shared.bot.parse.messages import messages
from shared.bot.parse.reader import Reader
from shared.bot.problems import join
from shared.bot.text import words
from shared.bot.values import DAYS, day, time_range

# The built-in opt-out keywords: a message that is exactly one of them (any case, any
# accent, punctuation ignored) opts the contact out of (or back into) marketing messages,
# in the middle of a flow too. `opt_out: {stop: [...], start: [...]}` replaces them.
STOP = ("STOP", "STOPALL", "UNSUBSCRIBE", "DISISCRIVIMI", "CANCELLAMI")
START = ("START", "UNSTOP", "ISCRIVIMI")


def _said(en: str, it: str) -> tuple[TextMessage, ...]:
    return (TextMessage(Text({"en": Template(en, (en,)), "it": Template(it, (it,))})),)


STOP_REPLY = _said(
    "You're unsubscribed: we won't send you promotional messages. Write START to subscribe again.",
    "Fatto: non ti invieremo più messaggi promozionali. Scrivi START per riattivarli.",
)
START_REPLY = _said(
    "You're subscribed again. Write STOP to unsubscribe.",
    "Iscrizione riattivata. Scrivi STOP per disiscriverti.",
)
HANDOFF_REPLY = _said(
    "I'm passing you to a colleague, who will answer here.",
    "Ti passo a un collega, che ti risponderà qui.",
)


def business_hours(r: Reader, value: Any, path: str) -> BusinessHours | None:
    keys = ("timezone", "weekly", "holidays", "away_message", "away_every", "outside_hours")
    spec = r.mapping(value, path, keys, ("timezone",))
    if spec is None:
        return None
    zone = _zone(r, spec.get("timezone"), join(path, "timezone")) if "timezone" in spec else None
    weekly = _weekly(r, spec.get("weekly", {}), join(path, "weekly"))
    holidays = set()
    if "holidays" in spec:
        items = spec["holidays"]
        if not isinstance(items, list):
            r.error(join(path, "holidays"), "must be a list of days (YYYY-MM-DD)")
            items = []
        for i, item in enumerate(items):
            found = day(item)
            if found is None:
                r.error(join(join(path, "holidays"), i), f"`{item}` is not a day (YYYY-MM-DD)")
            else:
                holidays.add(found.isoformat())
    away = (
        messages(r, spec["away_message"], join(path, "away_message"))
        if "away_message" in spec
        else ()
    )
    every = 12 * 3600.0
    if "away_every" in spec:
        every = r.duration(spec["away_every"], join(path, "away_every"))
        every = 12 * 3600.0 if every is None else every
    outside: list[str] = []
    outside_all = False
    if "outside_hours" in spec:
        value = spec["outside_hours"]
        if value == "all":
            outside_all = True
        elif isinstance(value, list):
            outside = [
                x for i, x in enumerate(value) if r.ident(x, join(join(path, "outside_hours"), i))
            ]
        else:
            r.error(join(path, "outside_hours"), "must be a list of rule ids, or `all`")
    if zone is None or weekly is None:
        return None
    return BusinessHours(
        zone, weekly, frozenset(holidays), away, every, tuple(outside), outside_all
    )


def _zone(r: Reader, value: Any, path: str) -> str | None:
    name = r.string(value, path)
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        r.error(path, f"`{name}` is not a time zone (like Europe/Rome)")
        return None
    return name


def _weekly(r: Reader, value: Any, path: str) -> tuple[tuple[tuple[int, int], ...], ...] | None:
    spec = r.mapping(value, path, DAYS)
    if spec is None:
        return None
    week = []
    for name in DAYS:
        where = join(path, name)
        items = spec.get(name) or []
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list):
            r.error(where, "must be a list of ranges like 09:00-13:00")
            items = []
        ranges = []
        for i, item in enumerate(items):
            found = time_range(item)
            if found is None:
                r.error(
                    join(where, i),
                    f"`{item}` is not a range HH:MM-HH:MM with the end after the start "
                    "(24:00 may end a day; a night across midnight is two ranges, one each day)",
                )
            else:
                ranges.append(found)
        ranges.sort()
        for (_, end), (start, _) in pairwise(ranges):
            if start < end:
                r.error(where, "ranges overlap")
                break
        week.append(tuple(ranges))
    return tuple(week)


def opt_out(r: Reader, value: Any, path: str) -> OptOutKeywords:
    spec = (
        r.mapping(value, path, ("stop", "start", "stop_reply", "start_reply"))
        if value is not None
        else {}
    )
    spec = spec or {}
    stop = (
        _keywords(r, spec["stop"], join(path, "stop"))
        if "stop" in spec
        else [words(k) for k in STOP]
    )
    start = (
        _keywords(r, spec["start"], join(path, "start"))
        if "start" in spec
        else [words(k) for k in START]
    )
    stop_reply = (
        messages(r, spec["stop_reply"], join(path, "stop_reply"))
        if "stop_reply" in spec
        else STOP_REPLY
    )
    start_reply = (
        messages(r, spec["start_reply"], join(path, "start_reply"))
        if "start_reply" in spec
        else START_REPLY
    )
    clash = set(stop) & set(start)
    if clash:
        r.error(path, f"`{' '.join(next(iter(clash)))}` is both a stop and a start keyword")
    return OptOutKeywords(tuple(stop), tuple(start), stop_reply, start_reply)


def _keywords(r: Reader, value: Any, path: str) -> list[tuple[str, ...]]:
    if value == []:
        return []  # an empty list turns the keywords off
    out = []
    for i, item in enumerate(r.strings(value, path)):
        folded = words(item)
        if folded:
            out.append(folded)
        else:
            r.error(join(path, i) if isinstance(value, list) else path, f"`{item}` has no words")
    return out


def llm(r: Reader, value: Any, path: str) -> LLMSettings:
    keys = ("max_tokens", "timeout", "history", "handoff_marker", "handoff_reply")
    spec = r.mapping(value, path, keys)
    if spec is None:
        return LLMSettings(handoff_reply=HANDOFF_REPLY)
    tokens = (
        r.integer(spec["max_tokens"], join(path, "max_tokens"), 1, limits.LLM_TOKENS)
        if "max_tokens" in spec
        else None
    )
    timeout = None
    if "timeout" in spec:
        where = join(path, "timeout")
        timeout = r.bounded(
            r.duration(spec["timeout"], where, positive=True), where, limits.LLM_TIMEOUT
        )
    history = (
        r.integer(spec["history"], join(path, "history"), 0, limits.LLM_HISTORY)
        if "history" in spec
        else None
    )
    marker = (
        r.string(spec["handoff_marker"], join(path, "handoff_marker"))
        if "handoff_marker" in spec
        else None
    )
    said = (
        messages(r, spec["handoff_reply"], join(path, "handoff_reply"))
        if "handoff_reply" in spec
        else HANDOFF_REPLY
    )
    base = LLMSettings()
    return LLMSettings(
        max_tokens=tokens or base.max_tokens,
        timeout=timeout or base.timeout,
        history=base.history if history is None else history,
        handoff_marker=(marker or base.handoff_marker).strip(),
        handoff_reply=said,
    )
