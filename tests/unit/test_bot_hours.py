"""Business hours: ranges with the end excluded, 24:00, holidays, daylight saving in
Europe/Rome, the hours and the next opening in words, and what the bot does when closed:
only `outside_hours` rules, the away message at most once per `away_every` and never on
top of another reply, judged at Meta's timestamp."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from shared.bot import BotState, Contact, Turn, load, respond
from shared.bot.hours import describe_next_open, describe_week, is_open, next_open
from shared.bot.loader import Bot
from shared.bot.model import BusinessHours

ROME = ZoneInfo("Europe/Rome")


def rome(*parts: int) -> float:
    return datetime(*parts, tzinfo=ROME).timestamp()  # type: ignore[misc]


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def hours(**days: list[str]) -> BusinessHours:
    holidays = days.pop("holidays", [])
    text = textwrap.dedent(
        f"""
        business_hours:
          timezone: Europe/Rome
          weekly: {dict(days)}
          holidays: {holidays}
        rules: []
        """
    )
    spec = load(text).definition.business_hours
    assert spec is not None
    return spec


WEEK = hours(
    mon=["09:00-13:00", "15:00-19:00"],
    tue=["09:00-13:00", "15:00-19:00"],
    wed=["09:00-13:00", "15:00-19:00"],
    thu=["09:00-13:00", "15:00-19:00"],
    fri=["09:00-13:00", "15:00-19:00"],
    sat=["09:00-13:00"],
    holidays=["2026-12-25"],
)


@pytest.mark.parametrize(
    ("when", "open_"),
    [
        ((2026, 11, 30, 8, 59, 59), False),  # a Monday
        ((2026, 11, 30, 9, 0), True),
        ((2026, 11, 30, 12, 59, 59), True),
        ((2026, 11, 30, 13, 0), False),  # the end is excluded
        ((2026, 11, 30, 15, 0), True),
        ((2026, 12, 5, 12, 0), True),  # Saturday
        ((2026, 12, 5, 15, 0), False),
        ((2026, 12, 6, 10, 0), False),  # Sunday: not written, closed
        ((2026, 12, 25, 10, 0), False),  # a Friday, but a holiday
        ((2026, 12, 24, 10, 0), True),
    ],
)
def test_open_or_closed(when: tuple[int, ...], open_: bool) -> None:
    assert is_open(WEEK, rome(*when)) is open_


def test_24_00_ends_a_day_and_a_night_is_two_ranges() -> None:
    night = hours(fri=["18:00-24:00"], sat=["00:00-02:00"])
    assert is_open(night, rome(2026, 12, 4, 23, 59, 59))
    assert is_open(night, rome(2026, 12, 5, 0, 0))
    assert is_open(night, rome(2026, 12, 5, 1, 59))
    assert not is_open(night, rome(2026, 12, 5, 2, 0))
    alone = hours(fri=["18:00-24:00"])
    assert not is_open(alone, rome(2026, 12, 5, 0, 0))


def test_the_wall_clock_holds_across_the_spring_change() -> None:
    # Clocks go from 02:00 to 03:00 on Sunday 29 March 2026: 09:00 is 08:00 UTC before, 07:00 after.
    assert not is_open(WEEK, utc(2026, 3, 23, 7, 30))  # 08:30 in Rome (CET)
    assert is_open(WEEK, utc(2026, 3, 23, 8, 30))
    assert is_open(WEEK, utc(2026, 3, 30, 7, 30))  # 09:30 in Rome (CEST)
    assert not is_open(WEEK, utc(2026, 3, 30, 6, 30))


def test_a_range_starting_in_the_skipped_hour_opens_when_the_clock_jumps() -> None:
    early = hours(sun=["02:30-04:00"])
    assert not is_open(early, utc(2026, 3, 29, 0, 59, 59))  # 01:59:59 CET
    assert is_open(early, utc(2026, 3, 29, 1, 0))  # 03:00 CEST
    opens = next_open(early, utc(2026, 3, 29, 0, 0))
    assert opens is not None and opens.timestamp() == utc(2026, 3, 29, 1, 0)
    assert (opens.hour, opens.minute) == (3, 0)


def test_the_repeated_hour_in_autumn_counts_both_times_and_opens_at_the_first() -> None:
    # Clocks go from 03:00 back to 02:00 on Sunday 25 October 2026.
    late = hours(sun=["02:00-02:30"])
    assert is_open(late, utc(2026, 10, 25, 0, 15))  # 02:15 CEST
    assert not is_open(late, utc(2026, 10, 25, 0, 45))  # 02:45 CEST
    assert is_open(late, utc(2026, 10, 25, 1, 15))  # 02:15 CET, the second time
    opens = next_open(late, utc(2026, 10, 24, 23, 0))
    assert opens is not None and opens.timestamp() == utc(2026, 10, 25, 0, 0)


def test_the_day_after_autumns_change_opens_at_its_wall_time() -> None:
    opens = next_open(WEEK, rome(2026, 10, 24, 14, 0))  # Saturday afternoon, closed
    assert opens is not None
    assert opens.timestamp() == utc(2026, 10, 26, 8, 0)  # Monday 09:00 CET


def test_next_open_skips_holidays_and_closed_days() -> None:
    opens = next_open(WEEK, rome(2026, 12, 24, 19, 30))
    assert opens is not None and opens.isoformat() == "2026-12-26T09:00:00+01:00"
    assert next_open(WEEK, rome(2026, 11, 30, 10, 0)).timestamp() == rome(2026, 11, 30, 10, 0)  # type: ignore[union-attr]
    assert next_open(hours(), rome(2026, 11, 30, 10, 0)) is None


@pytest.mark.parametrize(
    ("when", "language", "said"),
    [
        ((2026, 11, 30, 10, 0), "en", "now"),
        ((2026, 11, 30, 13, 30), "en", "today at 15:00"),
        ((2026, 11, 30, 20, 0), "en", "tomorrow at 09:00"),
        ((2026, 11, 30, 20, 0), "it", "domani alle 09:00"),
        ((2026, 12, 5, 14, 0), "en", "Monday at 09:00"),
        ((2026, 12, 5, 14, 0), "it", "lunedì alle 09:00"),
        ((2026, 12, 5, 14, 0), "de", "Montag um 09:00"),
        ((2026, 12, 5, 14, 0), "xx", "Monday at 09:00"),
    ],
)
def test_the_next_opening_in_words(when: tuple[int, ...], language: str, said: str) -> None:
    assert describe_next_open(WEEK, rome(*when), language) == said


def test_a_next_opening_beyond_a_week_says_the_date() -> None:
    holidays = [f"2026-08-{d:02d}" for d in range(1, 32)]
    summer = hours(mon=["09:00-12:00"], holidays=holidays)
    assert (
        describe_next_open(summer, rome(2026, 7, 31, 12, 0), "en") == "Monday 7 September at 09:00"
    )
    assert (
        describe_next_open(summer, rome(2026, 7, 31, 12, 0), "it")
        == "lunedì 7 settembre alle 09:00"
    )
    assert describe_next_open(hours(), rome(2026, 7, 31, 12, 0), "en") == ""


def test_the_week_in_words() -> None:
    assert describe_week(WEEK, "en") == (
        "Monday to Friday 09:00\u201313:00 and 15:00\u201319:00, Saturday 09:00\u201313:00"
    )
    assert describe_week(WEEK, "it") == (
        "dal lunedì al venerdì 09:00\u201313:00 e 15:00\u201319:00, sabato 09:00\u201313:00"
    )
    weekend = hours(mon=["10:00-12:00"], sat=["10:00-24:00"], sun=["10:00-24:00"])
    assert describe_week(weekend, "en") == (
        "Monday 10:00\u201312:00, Saturday and Sunday 10:00\u201324:00"
    )
    always = hours(
        **{d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    )
    assert describe_week(always, "en") == "every day all day"
    assert describe_week(always, "it") == "tutti i giorni tutto il giorno"
    three = hours(tue=["08:00-09:00", "10:00-11:00", "12:00-13:00"])
    assert describe_week(three, "en") == (
        "Tuesday 08:00\u201309:00, 10:00\u201311:00 and 12:00\u201313:00"
    )
    assert describe_week(hours(), "en") == ""


# --- the bot when closed --------------------------------------------------------------------

CLOSED_BOT = """
language: en
business_hours:
  timezone: Europe/Rome
  weekly:
    mon: ["09:00-13:00"]
  away_message:
    en: "Closed; back {{business.next_open}}."
    it: "Chiusi; torniamo {{business.next_open}}."
  away_every: 12h
  outside_hours: [hours]
rules:
  - id: hours
    match: {any: [hours]}
    reply: "We're open {{business.hours}}."
  - id: hi
    match: {any: [hi]}
    reply: "Hi!"
  - id: start
    match: {any: [start]}
    flow: ask
fallback: {text: "Sorry?"}
flows:
  ask:
    steps:
      - {id: q, ask: "Your name?", save: name}
    done:
      reply: "Thanks {{slots.name}}."
"""


def closed_bot(text: str = CLOSED_BOT) -> Bot:
    return load(textwrap.dedent(text))


def said(
    bot: Bot, text: str, at: float, state: BotState | None = None, **kw: object
) -> tuple[list[str], BotState]:
    now = float(kw.pop("now", at))  # type: ignore[arg-type]
    contact = kw.pop("contact", Contact())
    outcome = respond(bot, state or BotState(), Turn(text=text, timestamp=at), contact, now)  # type: ignore[arg-type]
    return [r["text"]["body"] for r in outcome.replies], outcome.state


MONDAY_10 = rome(2026, 11, 30, 10, 0)
MONDAY_20 = rome(2026, 11, 30, 20, 0)


def test_when_open_every_rule_and_the_fallback_run() -> None:
    bot = closed_bot()
    assert said(bot, "hi", MONDAY_10)[0] == ["Hi!"]
    assert said(bot, "what?", MONDAY_10)[0] == ["Sorry?"]


def test_when_closed_only_outside_hours_rules_run_else_the_away_message() -> None:
    bot = closed_bot()
    assert said(bot, "hours?", MONDAY_20)[0] == ["We're open Monday 09:00\u201313:00."]
    replies, state = said(bot, "hi", MONDAY_20)
    assert replies == ["Closed; back Monday 7 December at 09:00."]  # a week on: the date
    assert state.away_at == MONDAY_20
    italian = Contact(attributes={"language": "it"})
    assert said(bot, "ciao", rome(2026, 12, 1, 10, 0), contact=italian)[0] == [
        "Chiusi; torniamo lunedì alle 09:00."
    ]


def test_the_away_message_goes_at_most_once_per_away_every() -> None:
    bot = closed_bot()
    _, state = said(bot, "hi", MONDAY_20)
    assert said(bot, "hello?", MONDAY_20 + 3600, state)[0] == []
    later = MONDAY_20 + 12 * 3600  # Tuesday 08:00, still closed
    replies, state = said(bot, "anyone?", later, state)
    assert replies == ["Closed; back Monday at 09:00."]
    assert state.away_at == later


def test_the_away_message_is_never_on_top_of_another_reply() -> None:
    bot = closed_bot()
    replies, state = said(bot, "hours", MONDAY_20)
    assert replies == ["We're open Monday 09:00\u201313:00."]
    assert state.away_at is None


def test_hours_are_judged_at_metas_timestamp_not_at_handling() -> None:
    bot = closed_bot()
    # Sent at 12:59 while open, handled at 13:05 after a delay: answered as when open.
    assert said(bot, "hi", rome(2026, 11, 30, 12, 59), now=rome(2026, 11, 30, 13, 5))[0] == ["Hi!"]
    assert said(bot, "hi", rome(2026, 11, 30, 13, 0), now=rome(2026, 11, 30, 12, 0))[0] == [
        "Closed; back Monday 7 December at 09:00."
    ]


def test_a_customer_in_a_flow_goes_on_when_the_business_closes() -> None:
    bot = closed_bot()
    _, state = said(bot, "start", rome(2026, 11, 30, 12, 59))
    assert state.flow == "ask"
    assert said(bot, "Ann", MONDAY_20, state)[0] == ["Thanks Ann."]


def test_the_fallback_runs_when_closed_only_if_listed() -> None:
    listed = closed_bot(
        CLOSED_BOT.replace("outside_hours: [hours]", "outside_hours: [hours, fallback]")
    )
    assert said(listed, "what?", MONDAY_20)[0] == ["Sorry?"]
    assert said(listed, "hi", MONDAY_20)[0] == ["Sorry?"]  # `hi` may not run: the fallback does


def test_outside_hours_all_answers_at_any_time() -> None:
    bot = closed_bot(CLOSED_BOT.replace("outside_hours: [hours]", "outside_hours: all"))
    assert said(bot, "hi", MONDAY_20)[0] == ["Hi!"]
    assert said(bot, "what?", MONDAY_20)[0] == ["Sorry?"]


def test_no_away_message_means_silence_when_closed() -> None:
    bot = closed_bot(
        CLOSED_BOT.replace(
            '    en: "Closed; back {{business.next_open}}."\n'
            '    it: "Chiusi; torniamo {{business.next_open}}."\n',
            "",
        ).replace(
            "  away_message:\n",
            "",
        )
    )
    assert said(bot, "hi", MONDAY_20) == ([], BotState())


def test_without_business_hours_the_variables_are_empty() -> None:
    bot = load(
        "rules:\n  - id: h\n    match: {any: [hours]}\n"
        "    reply: 'Open: {{business.hours}}{{business.next_open}}.'\n"
    )
    assert said(bot, "hours", MONDAY_20)[0] == ["Open: ."]
