"""`GET /v1/analytics` (a business key, any role): a period's figures for charts, from the
read models only: messages per day in and out and the conversations' states (the
conversations read model), first responses and handoffs (the analytics read model,
projections/analytics.py), campaign funnels (the campaigns read model).

Days are UTC days; a period is whole days, `from` and `to` both included. Only the
caller's business, and with `phone_number_id` only that number (another business's number
is a 404, as everywhere)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from services.api import inputs
from services.api.campaigns import Counts
from services.api.errors import invalid, not_found, unavailable
from services.api.queries import get_number
from services.api.routes import Call, Query, Reply
from services.api.schemas import Answer

MAX_DAYS = 366
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)  # the end of a day stays a date
DEFAULT_DAYS = 14
CAMPAIGNS = 20  # the newest of the period: a chart of more is unreadable
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
QUERY = (
    Query("from", "the first day, YYYY-MM-DD (UTC; default: 13 days before `to`)",
          {"type": "string", "format": "date"}),
    Query("to", "the last day, YYYY-MM-DD (UTC; default: today)",
          {"type": "string", "format": "date"}),
    Query("phone_number_id", "one of the business's numbers"),
)  # fmt: skip


class Period(Answer, kw_only=True):
    from_: str = msgspec.field(name="from")
    to: str
    days: int
    timezone: str = "UTC"
    phone_number_id: str | None = None


class Day(Answer, kw_only=True):
    date: str
    inbound: int
    outbound: int


class Responses(Answer, kw_only=True):
    median_ms: int | None
    p90_ms: int | None
    count: int


class FirstResponse(Answer, kw_only=True):
    bot: Responses
    agent: Responses


class HandoffRate(Answer, kw_only=True):
    conversations: int
    handed_off: int
    rate: float | None  # handed_off / conversations; None with no conversation


class ByState(Answer, kw_only=True):
    bot: int = 0
    waiting: int = 0
    agent: int = 0
    closed: int = 0


class CampaignFunnel(Answer, kw_only=True):
    id: str
    name: str
    status: str
    counts: Counts


class Analytics(Answer, kw_only=True):
    period: Period
    messages_per_day: list[Day]
    first_response: FirstResponse
    handoff_rate: HandoffRate
    conversations_by_state: ByState
    campaigns: list[CampaignFunnel]


def _day(call: Call, name: str) -> date | None:
    text = inputs.query_text(call.request, name, 10)
    if text is None:
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise invalid(name, "a date, YYYY-MM-DD") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise invalid(name, f"a date from {FIRST_DAY} to {LAST_DAY}")
    return day


def period(call: Call) -> tuple[date, date]:
    """The days asked for: `from` and `to` included, at most MAX_DAYS of them."""
    inputs.known_query(call.request, ("from", "to", "phone_number_id"))
    last = _day(call, "to") or datetime.now(UTC).date()
    first = _day(call, "from") or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise invalid("from", "must not be after `to`")
    if (last - first).days + 1 > MAX_DAYS:
        raise invalid("to", f"a period is at most {MAX_DAYS} days")
    return first, last


async def get_analytics(call: Call) -> Reply:
    first, last = period(call)
    number = inputs.query_text(call.request, "phone_number_id", 32)
    if number is not None and await get_number(call.deps.pool, call.business_id, number) is None:
        raise not_found("number")  # another business's number, as one that does not exist
    try:
        answer = await figures(call.deps.pool, call.business_id, number, first, last)
    except asyncpg.QueryCanceledError:
        raise unavailable("the figures took too long: ask for a shorter period") from None
    return Reply(200, answer)


STATEMENT_TIMEOUT_MS = 10_000


async def figures(
    pool: asyncpg.Pool, business: str, number: str | None, first: date, last: date
) -> Analytics:
    """The business's (or its number's) figures for the days `first` to `last`."""
    start = datetime.combine(first, datetime.min.time(), UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC)
    args = (business, number, start, end)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # One snapshot: the figures agree with each other. Bounded: a year of a big
        # business's figures must not hold a connection of the api's small pool for long.
        await conn.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
        return Analytics(
            period=Period(
                from_=first.isoformat(),
                to=last.isoformat(),
                days=(last - first).days + 1,
                phone_number_id=number,
            ),
            messages_per_day=await _per_day(conn, args, first, last),
            first_response=FirstResponse(
                bot=await _responses(conn, args, "bot"),
                agent=await _responses(conn, args, "agent"),
            ),
            handoff_rate=await _handoffs(conn, args),
            conversations_by_state=await _states(conn, args),
            campaigns=await _campaigns(conn, args),
        )


# The conversations of the period: those the customer wrote in (a campaign's message
# alone does not make one). $1 business, $2 number or NULL, $3 and $4 the period.
_ACTIVE = """
SELECT DISTINCT m.conversation_id FROM api_messages m
 WHERE m.business_id = $1 AND m.direction = 'inbound' AND m.type <> 'system'
   AND m.created_at >= $3 AND m.created_at < $4
   AND ($2::text IS NULL OR m.conversation_id IN (SELECT conversation_id
        FROM api_conversations WHERE business_id = $1 AND phone_number_id = $2))
"""


async def _per_day(
    conn: asyncpg.Connection, args: tuple[Any, ...], first: date, last: date
) -> list[Day]:
    rows = await conn.fetch(
        "SELECT (m.created_at AT TIME ZONE 'UTC')::date AS day,"
        " count(*) FILTER (WHERE m.direction = 'inbound') AS inbound,"
        " count(*) FILTER (WHERE m.direction = 'outbound') AS outbound"
        " FROM api_messages m WHERE m.business_id = $1"
        " AND m.created_at >= $3 AND m.created_at < $4 AND m.type <> 'system'"
        " AND ($2::text IS NULL OR m.conversation_id IN (SELECT conversation_id"
        "      FROM api_conversations WHERE business_id = $1 AND phone_number_id = $2))"
        " GROUP BY 1",
        *args,
    )
    found = {r["day"]: r for r in rows}
    days = []
    for n in range((last - first).days + 1):  # every day, the silent ones as 0
        day = first + timedelta(days=n)
        row = found.get(day)
        days.append(
            Day(
                date=day.isoformat(),
                inbound=row["inbound"] if row else 0,
                outbound=row["outbound"] if row else 0,
            )
        )
    return days


async def _responses(conn: asyncpg.Connection, args: tuple[Any, ...], who: str) -> Responses:
    row = await conn.fetchrow(
        "SELECT count(*) AS n,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS median,"
        " percentile_cont(0.9) WITHIN GROUP (ORDER BY ms) AS p90"
        " FROM (SELECT extract(epoch FROM answered_at - asked_at) * 1000 AS ms"
        "   FROM api_analytics_responses WHERE business_id = $1"
        "   AND ($2::text IS NULL OR phone_number_id = $2)"
        "   AND asked_at >= $3 AND asked_at < $4 AND responder = $5) r",
        *args,
        who,
    )
    assert row is not None

    def ms(value: Any) -> int | None:
        return None if value is None else round(float(value))

    return Responses(median_ms=ms(row["median"]), p90_ms=ms(row["p90"]), count=row["n"])


async def _handoffs(conn: asyncpg.Connection, args: tuple[Any, ...]) -> HandoffRate:
    row = await conn.fetchrow(
        f"WITH active AS ({_ACTIVE})"
        " SELECT (SELECT count(*) FROM active) AS conversations,"
        " (SELECT count(DISTINCT h.conversation_id) FROM api_analytics_handoffs h"
        "   JOIN active a ON a.conversation_id = h.conversation_id"
        "  WHERE h.business_id = $1 AND h.at >= $3 AND h.at < $4) AS handed_off",
        *args,
    )
    assert row is not None
    total, handed = row["conversations"], row["handed_off"]
    return HandoffRate(
        conversations=total,
        handed_off=handed,
        rate=round(handed / total, 4) if total else None,
    )


async def _states(conn: asyncpg.Connection, args: tuple[Any, ...]) -> ByState:
    """The period's conversations by their state now."""
    rows = await conn.fetch(
        f"WITH active AS ({_ACTIVE})"
        " SELECT c.state, count(*) AS n FROM api_conversations c"
        " JOIN active a ON a.conversation_id = c.conversation_id"
        " WHERE c.business_id = $1 GROUP BY c.state",
        *args,
    )
    known = ByState.__struct_fields__
    return ByState(**{r["state"]: r["n"] for r in rows if r["state"] in known})


async def _campaigns(conn: asyncpg.Connection, args: tuple[Any, ...]) -> list[CampaignFunnel]:
    """The campaigns that ran in the period (started before its end, last changed after its
    start), newest first, with their recipients' counts as `GET /v1/campaigns/{id}`."""
    rows = await conn.fetch(
        "SELECT c.campaign_id, c.name, c.status,"
        " count(r.seq) AS total,"
        " count(r.seq) FILTER (WHERE r.status = 'queued') AS queued,"
        " count(r.seq) FILTER (WHERE r.status IN ('sent', 'delivered', 'read')) AS sent,"
        " count(r.seq) FILTER (WHERE r.status IN ('delivered', 'read')) AS delivered,"
        " count(r.seq) FILTER (WHERE r.status = 'read') AS read,"
        " count(r.seq) FILTER (WHERE r.replied) AS replied,"
        " count(r.seq) FILTER (WHERE r.status = 'failed') AS failed,"
        " count(r.seq) FILTER (WHERE r.status = 'skipped') AS skipped"
        " FROM api_campaigns c LEFT JOIN api_campaign_recipients r"
        "   ON r.campaign_id = c.campaign_id"
        " WHERE c.business_id = $1 AND ($2::text IS NULL OR c.phone_number_id = $2)"
        " AND c.status <> 'draft' AND c.created_at < $4 AND c.updated_at >= $3"
        " GROUP BY c.campaign_id, c.name, c.status, c.sort_position"
        " ORDER BY c.sort_position DESC, c.campaign_id DESC LIMIT $5",
        *args,
        CAMPAIGNS,
    )
    fields = Counts.__struct_fields__
    return [
        CampaignFunnel(
            id=r["campaign_id"],
            name=r["name"],
            status=r["status"],
            counts=Counts(**{f: r[f] for f in fields}),
        )
        for r in rows
    ]
