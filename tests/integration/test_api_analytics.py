"""The analytics read model against real PostgreSQL: which replies are first responses (the
bot's, a person's, a withdrawn reply's undone, a business key's message none), which
handoffs count (from the bot only, a person's own message starting no wait), another
business's events never counted, and a rebuild from the event store giving the same
figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from services.api.analytics import figures
from services.api.projections import rebuild
from shared.events.conversation import (
    BotReplied,
    BusinessWrote,
    Closed,
    HandedOff,
    PhoneAppWrote,
    Released,
    ReplyWithdrawn,
)
from tests.integration.test_api_projections import append, catch_up, digits, received


def _days() -> tuple[object, object]:
    today = datetime.now(UTC).date()
    return today - timedelta(days=1), today + timedelta(days=1)


def _wrote(message_id: str, author: str) -> BusinessWrote:
    return BusinessWrote(message_id=message_id, author=author, type="text", payload={}, text="x")


async def test_first_responses_handoffs_and_a_rebuild(pg_pool: asyncpg.Pool) -> None:
    business, other, number = f"biz_{digits(6)}", f"biz_{digits(6)}", digits()
    ann, bo, cy = digits(), digits(), digits()
    a, b = f"{number}.{ann}", f"{number}.{bo}"

    # Ann: the bot answers; its second reply is withdrawn, so a person's reply answers that
    # message; a reassignment is not a second handoff; a business key's message answers
    # nothing.
    await append(pg_pool, f"inbox-{a}", received(business, number, ann, "hi"))
    await append(pg_pool, f"conversation-{a}", BotReplied(seq=0, text="hello", command_id="c1"))
    await append(pg_pool, f"inbox-{a}", received(business, number, ann, "again"))
    await append(
        pg_pool,
        f"conversation-{a}",
        BotReplied(seq=1, text="spoken", command_id="c2", speak=True),
        HandedOff(request_id="r1", assignee="usr_ada", by="bot", reason="asked", seq=1),
        ReplyWithdrawn(seq=1, command_id="c2"),
        HandedOff(request_id="r2", assignee="usr_bo", by="usr_bo", seq=1),
        _wrote("m1", "agent"),
        _wrote("m2", "business"),
        Released(request_id="r3", seq=1),
    )
    # Bo: the phone app answers (and so hands off, starting no wait); a reaction waits for
    # nothing; closed.
    await append(pg_pool, f"inbox-{b}", received(business, number, bo, "yo"))
    await append(
        pg_pool,
        f"conversation-{b}",
        PhoneAppWrote(wamid="wamid.phone1", type="text", text="from the shop", seq=0),
        HandedOff(request_id="r4", by="phone-app", reason="phone_app_reply", seq=0),
        _wrote("m3", "agent"),
    )
    reaction = {"type": "reaction", "reaction": {"message_id": "wamid.phone1", "emoji": "+"}}
    await append(
        pg_pool,
        f"inbox-{b}",
        received(business, number, bo, "", type="reaction", message=reaction),
    )
    await append(pg_pool, f"conversation-{b}", _wrote("m4", "agent"), Closed(request_id="r5"))
    # Another business's customer on another number.
    elsewhere = digits()
    c = f"{elsewhere}.{cy}"
    await append(pg_pool, f"inbox-{c}", received(other, elsewhere, cy, "not yours"))
    await append(pg_pool, f"conversation-{c}", BotReplied(seq=0, text="hey", command_id="c3"))
    await catch_up(pg_pool)

    first, last = _days()
    found = await figures(pg_pool, business, None, first, last)
    assert found.first_response.bot.count == 1
    assert found.first_response.agent.count == 2  # m1 (Ann's "again"), the phone app's
    assert (
        found.first_response.bot.median_ms is not None and found.first_response.bot.median_ms >= 0
    )
    assert (found.handoff_rate.conversations, found.handoff_rate.handed_off) == (2, 2)
    assert found.handoff_rate.rate == 1.0
    states = found.conversations_by_state
    assert (states.bot, states.waiting, states.agent, states.closed) == (1, 0, 0, 1)
    # In: hi, again, yo, the reaction. Out: c1, m1, m2 (c2 withdrawn), the phone app, m3, m4.
    assert sum(d.inbound for d in found.messages_per_day) == 4
    assert sum(d.outbound for d in found.messages_per_day) == 6
    theirs = await figures(pg_pool, other, None, first, last)
    assert theirs.first_response.bot.count == 1 and theirs.first_response.agent.count == 0
    assert theirs.handoff_rate.conversations == 1 and theirs.handoff_rate.handed_off == 0
    # The number filter: ours has it all; the other business's number nothing of ours.
    assert (await figures(pg_pool, business, number, first, last)).first_response == (
        found.first_response
    )
    assert (
        await figures(pg_pool, business, elsewhere, first, last)
    ).handoff_rate.conversations == 0

    rows = await pg_pool.fetch(
        "SELECT responder, reply_id FROM api_analytics_responses WHERE business_id = $1"
        " ORDER BY position",
        business,
    )
    assert [(r["responder"], r["reply_id"]) for r in rows] == [
        ("bot", "c1"),
        ("agent", "m1"),
        ("agent", "wamid.phone1"),
    ]

    await rebuild(pg_pool)
    again = await figures(pg_pool, business, None, first, last)
    assert again == found
    assert await figures(pg_pool, other, None, first, last) == theirs
