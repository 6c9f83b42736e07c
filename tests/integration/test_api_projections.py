"""The api's read models against real PostgreSQL: events in, rows out, and a rebuild from the
event store giving the same rows. Each test uses its own business, numbers and customers
(the session database is shared)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import asyncpg

from services.api import queries
from services.api.ids import contact_id
from services.api.projections import NAMES, rebuild, subscriptions
from shared.events.business import (
    ContactCreated,
    ContactUpdated,
    ConversationRead,
    MessageRequested,
    contact_stream,
)
from shared.events.conversation import (
    BotReplied,
    BusinessWrote,
    Closed,
    CustomerWrote,
    HandedOff,
    Released,
    Reopened,
    ReplyWithdrawn,
)
from shared.events.dedup import IdentityLinked, MessageReceived
from shared.events.outbound import LifecycleChanged, MessageSent, SendFailed
from shared.eventstore import Event, new
from shared.eventstore.postgres import PostgresEventStore
from shared.eventstore.subscription import CheckpointMoved


def digits(n: int = 12) -> str:
    return "".join(random.choice("0123456789") for _ in range(n))


async def catch_up(pool: asyncpg.Pool) -> None:
    """Step every read model until it finds nothing new (an api of the e2e stack may be
    stepping the same checkpoints: the fence lets one of us commit each batch). read_all
    holds rows back while any older transaction on the server is open (anyone's: ids are
    server-wide), so "nothing new" counts only once the horizon has passed our last row."""
    last = await pool.fetchval("SELECT max(transaction_id) FROM events")
    for subscription in subscriptions(pool).values():
        while True:
            try:
                if not await subscription.step():
                    if await pool.fetchval(
                        "SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8", last
                    ):
                        break
                    await asyncio.sleep(0.02)  # someone's transaction is still open
            except CheckpointMoved:
                continue


async def append(pool: asyncpg.Pool, stream: str, *events: Event) -> None:
    await PostgresEventStore(pool).append(stream, [new(e) for e in events])


def received(business: str, number: str, customer: str, text: str, **kw: Any) -> MessageReceived:
    wamid = kw.pop("wamid", f"wamid.{uuid.uuid4().hex}")
    return MessageReceived(
        conversation_id=f"{number}.{customer}",
        business_id=business,
        phone_number_id=number,
        customer=customer,
        wa_id=kw.pop("wa_id", customer),
        customer_name=kw.pop("name", "Ann"),
        wamid=wamid,
        type=kw.pop("type", "text"),
        timestamp=kw.pop("timestamp", str(int(time.time()))),
        message=kw.pop("message", {"type": "text", "text": {"body": text}}),
        **kw,
    )


async def test_a_conversation_its_messages_and_statuses(pg_pool: asyncpg.Pool) -> None:
    business, number, customer = f"biz_{digits(6)}", digits(), digits()
    cid = f"{number}.{customer}"
    sent_at = int(time.time()) - 3600
    inbound = received(business, number, customer, "hello", timestamp=str(sent_at))
    await append(pg_pool, f"inbox-{cid}", inbound)
    await append(
        pg_pool,
        f"conversation-{cid}",
        CustomerWrote(seq=0, wamid=inbound.wamid, text="hello", customer=customer),
        BotReplied(seq=0, text="hi, how can I help?", command_id="cmd-1"),
    )
    await append(
        pg_pool,
        "message-wamid.out1",
        MessageSent(
            wamid="wamid.out1", command_id="cmd-1", conversation_id=cid, phone_number_id=number
        ),
        LifecycleChanged(wamid="wamid.out1", status="read", previous="sent"),
        LifecycleChanged(wamid="wamid.out1", status="delivered", previous="read"),  # late
    )
    await catch_up(pg_pool)
    conversation = await queries.get_conversation(pg_pool, business, cid)
    assert conversation is not None
    assert (
        conversation.unread == 1 and conversation.state == "bot" and conversation.assignee is None
    )
    assert conversation.window_open_until is not None
    assert int(conversation.window_open_until.timestamp()) == sent_at + 24 * 3600
    assert conversation.last_message_preview == "hi, how can I help?"
    assert conversation.contact.id == contact_id(business, customer)
    assert conversation.contact.name == "Ann" and conversation.contact.wa_id == customer
    history = await queries.list_messages(pg_pool, business, cid, 50, None)
    assert [(m.direction, m.author, m.text, m.status) for m in history.data] == [
        ("inbound", "customer", "hello", None),
        ("outbound", "bot", "hi, how can I help?", "read"),  # never back to delivered
    ]
    assert await queries.get_conversation(pg_pool, "another", cid) is None


async def test_a_transcript_refines_its_message_and_a_late_sent_moves_no_status_back(
    pg_pool: asyncpg.Pool,
) -> None:
    business, number, customer = f"biz_{digits(6)}", digits(), digits()
    cid = f"{number}.{customer}"
    voice = received(
        business, number, customer, "", type="audio", message={"type": "audio", "audio": {}}
    )
    await append(pg_pool, f"inbox-{cid}", voice)
    await append(
        pg_pool,
        f"conversation-{cid}",
        CustomerWrote(seq=0, wamid=voice.wamid, text="where is my order", customer=customer),
        BotReplied(seq=0, text="on its way", command_id=f"cmd-{cid}"),
    )
    # A reply in a conversation no business owns: nothing kept, nothing touched.
    orphan = f"{digits()}.{digits()}"
    await append(
        pg_pool, f"conversation-{orphan}", BotReplied(seq=0, text="x", command_id=f"c-{orphan}")
    )
    # The send failed at Meta after it was accepted: a MessageSent read after the failure
    # (the two streams interleave) keeps the failure and still gives the wamid.
    await append(pg_pool, f"outbox-cmd-{cid}", SendFailed(code=131026, title="Undeliverable"))
    await append(
        pg_pool,
        f"message-wamid.{cid}",
        MessageSent(
            wamid=f"wamid.{cid}", command_id=f"cmd-{cid}", conversation_id=cid,
            phone_number_id=number,
        ),
    )  # fmt: skip
    await catch_up(pg_pool)
    history = await queries.list_messages(pg_pool, business, cid, 50, None)
    assert [(m.author, m.text, m.status) for m in history.data] == [
        ("customer", "where is my order", None),
        ("bot", "on its way", "failed"),
    ]
    assert (
        await pg_pool.fetchval("SELECT wamid FROM api_messages WHERE message_id = $1", f"cmd-{cid}")
        == f"wamid.{cid}"
    )
    conversation = await queries.get_conversation(pg_pool, business, cid)
    assert conversation is not None and conversation.last_message_preview == "on its way"
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM api_messages WHERE conversation_id = $1", orphan
        )
        == 0
    )
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM api_conversations WHERE conversation_id = $1", orphan
        )
        == 0
    )


async def test_an_api_message_from_queued_to_read_and_a_refused_one(pg_pool: asyncpg.Pool) -> None:
    business, number, customer = f"biz_{digits(6)}", digits(), digits()
    cid = f"{number}.{customer}"
    for message_id in ("msg_a", "msg_b"):
        the_id = f"{message_id}_{digits(6)}"
        request = MessageRequested(
            message_id=the_id,
            business_id=business,
            conversation_id=cid,
            phone_number_id=number,
            to=customer,
            type="template",
            payload={"type": "template", "template": {"name": "hello"}},
        )
        # Not in `request-`: the session's api stack shares this database, and its
        # dispatcher would send the message (the read models read every category).
        await append(pg_pool, f"testrequest-{the_id}", request)
        await catch_up(pg_pool)
        view = await queries.get_message(pg_pool, business, the_id)
        assert view is not None and view.status == "queued"
        await append(
            pg_pool,
            f"conversation-{cid}",
            BusinessWrote(
                message_id=the_id,
                author="business",
                type="template",
                payload={},
                text="[template hello]",
            ),
        )
        if message_id == "msg_a":
            wamid = f"wamid.{the_id}"
            await append(
                pg_pool,
                f"message-{wamid}",
                MessageSent(
                    wamid=wamid, command_id=the_id, conversation_id=cid, phone_number_id=number
                ),
                LifecycleChanged(wamid=wamid, status="delivered"),
                LifecycleChanged(wamid=wamid, status="read"),
            )
            await catch_up(pg_pool)
            view = await queries.get_message(pg_pool, business, the_id)
            assert view is not None and (view.status, view.wamid) == ("read", wamid)
        else:
            await append(
                pg_pool, f"outbox-{the_id}", SendFailed(code=131047, title="Re-engagement message")
            )
            await catch_up(pg_pool)
            view = await queries.get_message(pg_pool, business, the_id)
            assert view is not None and view.status == "failed"
            assert view.error is not None and (view.error.code, view.error.title) == (
                131047,
                "Re-engagement message",
            )
    conversation = await queries.get_conversation(pg_pool, business, cid)
    assert conversation is not None and conversation.window_open_until is None
    assert conversation.last_message_preview == "[template hello]"


async def test_one_person_one_contact(pg_pool: asyncpg.Pool) -> None:
    business, number, other_number = f"biz_{digits(6)}", digits(), digits()
    wa_id, user_id = digits(), f"BR.{digits(10)}"
    # First seen by wa_id on one number, then by user_id alone on another: dedup linked them.
    await append(pg_pool, f"inbox-{number}.{wa_id}", received(business, number, wa_id, "one"))
    await append(
        pg_pool,
        f"identity-{business}.{user_id}",
        IdentityLinked(business_id=business, id=user_id, customer=wa_id, kind="user_id"),
    )
    await append(
        pg_pool,
        f"inbox-{other_number}.{wa_id}",
        received(business, other_number, wa_id, "two", wa_id="", user_id=user_id),
    )
    await catch_up(pg_pool)
    the_id = contact_id(business, wa_id)
    contact = await queries.get_contact(pg_pool, business, the_id)
    assert contact is not None and (contact.wa_id, contact.user_id) == (wa_id, user_id)
    assert await queries.customer_of(pg_pool, business, user_id) == wa_id
    page = await queries.list_contacts(pg_pool, business, 50, None)
    assert [c.id for c in page.data] == [the_id]
    assert (await queries.list_contacts(pg_pool, business, 50, None, q=user_id[3:8])).data
    # Tags and opt-out from the api's own events; an imported contact before it writes.
    await append(
        pg_pool,
        contact_stream(business, the_id),
        ContactUpdated(
            business_id=business, contact_id=the_id, tags=["vip"], marketing_opt_out=True
        ),
    )
    imported = digits()
    imported_id = contact_id(business, imported)
    await append(
        pg_pool,
        contact_stream(business, imported_id),
        ContactCreated(
            business_id=business,
            contact_id=imported_id,
            customer=imported,
            name="Bo",
            tags=["lead"],
        ),
    )
    await catch_up(pg_pool)
    vip = await queries.list_contacts(pg_pool, business, 50, None, tag="vip")
    assert [(c.id, c.marketing_opt_out) for c in vip.data] == [(the_id, True)]
    lead = await queries.get_contact(pg_pool, business, imported_id)
    assert lead is not None and (lead.name, lead.wa_id, lead.tags) == ("Bo", imported, ["lead"])


async def test_a_rebuild_gives_the_same_rows(pg_pool: asyncpg.Pool) -> None:
    business, number = f"biz_{digits(6)}", digits()
    for i in range(5):
        customer = digits()
        await append(
            pg_pool, f"inbox-{number}.{customer}", received(business, number, customer, f"m{i}")
        )
    await catch_up(pg_pool)

    async def rows() -> list[Any]:
        # This test's business only: the session's database holds other tests' and the e2e
        # stack's rows too, some sealed with keys this process does not hold.
        tables = []
        for table, order in (
            ("api_conversations", "conversation_id"),
            ("api_messages", "message_id"),
            ("api_contacts", "contact_id"),
            ("api_contact_ids", "id"),
        ):
            tables.append(
                [
                    dict(r)
                    for r in await pg_pool.fetch(
                        f"SELECT * FROM {table} WHERE business_id = $1 ORDER BY {order}", business
                    )
                ]
            )
        return tables

    before = await rows()
    counts = await rebuild(pg_pool)
    await catch_up(pg_pool)
    assert set(counts) == set(NAMES)  # a running api may have replayed some batches itself
    assert await rows() == before


async def test_who_answers_unread_and_a_withdrawn_voice_reply(pg_pool: asyncpg.Pool) -> None:
    business, number, customer = f"biz_{digits(6)}", digits(), digits()
    cid = f"{number}.{customer}"
    stream = f"conversation-{cid}"
    first = received(business, number, customer, "hello")
    await append(pg_pool, f"inbox-{cid}", first)
    await append(
        pg_pool,
        stream,
        CustomerWrote(seq=0, wamid=first.wamid, text="hello", customer=customer),
        BotReplied(seq=0, text="spoken soon", command_id="cmd-voice", speak=True),
        HandedOff(request_id="r1", assignee="usr_ada", by="usr_ada", seq=0),
        ReplyWithdrawn(seq=0, command_id="cmd-voice"),
    )

    async def seen() -> tuple[str, str | None, int, list[str]]:
        await catch_up(pg_pool)
        found = await queries.get_conversation(pg_pool, business, cid)
        assert found is not None
        history = await queries.list_messages(pg_pool, business, cid, 50, None)
        return found.state, found.assignee, found.unread, [m.text for m in history.data]

    # The withdrawn reply was never sent: it is not in the history.
    assert await seen() == ("agent", "usr_ada", 1, ["hello"])
    await append(
        pg_pool, f"seen-{cid}", ConversationRead(business_id=business, conversation_id=cid)
    )
    assert (await seen())[2] == 0
    # Another business's read changes nothing here.
    second = received(business, number, customer, "still there?")
    await append(pg_pool, f"inbox-{cid}", second)
    await append(pg_pool, f"seen-{cid}", ConversationRead(business_id="other", conversation_id=cid))
    assert (await seen())[:3] == ("agent", "usr_ada", 1)
    await append(pg_pool, stream, HandedOff(request_id="r2", by="bot", seq=1))
    assert (await seen())[:2] == ("waiting", None)
    await append(pg_pool, stream, Closed(request_id="r3", seq=1))
    assert (await seen())[:2] == ("closed", None)
    await append(pg_pool, stream, Reopened(seq=2))
    assert (await seen())[:2] == ("bot", None)
    await append(pg_pool, stream, HandedOff(request_id="r4", assignee="usr_bo", seq=2))
    await append(pg_pool, stream, Released(request_id="r5", seq=2))
    assert (await seen())[:2] == ("bot", None)
