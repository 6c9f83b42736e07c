"""Publishing a number's bot definition: the one writer of `bot-<phone_number_id>`.

`BotPublished` version N goes at stream version N - 1 and `directory_numbers.bot_version`
is set in the same transaction, the number's row locked so two publishes at once cannot
both be N (decision 0009). Used by `PUT .../bot` and by `make up` for the default bot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.api.directory import Actor
from services.api.errors import conflict, not_found
from services.api.writes import Write
from shared.events.business import BotPublished, bot_stream
from shared.eventstore import NO_STREAM, RecordedEvent, WrongExpectedVersion, new
from shared.eventstore.postgres import PostgresEventStore

# The shipped default bot: what a number without a published one runs when no LLM is set.
DEFAULT_BOT = Path(__file__).resolve().parents[2] / "deploy" / "bots" / "default.yaml"


async def locked_version(w: Write, business_id: str, number: str) -> int:
    """The number's published version, its row locked until the write commits; 404 when the
    number is not this business's."""
    version = await w.conn.fetchval(
        "SELECT bot_version FROM directory_numbers WHERE phone_number_id = $1"
        " AND business_id = $2 FOR UPDATE",
        number,
        business_id,
    )
    if version is None:
        raise not_found("number")
    return int(version)


async def published(conn: Any, number: str, version: int) -> RecordedEvent | None:
    """The BotPublished of `version` (None for 0 or when absent)."""
    if version < 1:
        return None
    events = await PostgresEventStore(conn=conn).read_stream(bot_stream(number), version - 1)
    for recorded in events:
        if isinstance(recorded.event, BotPublished) and recorded.event.version == version:
            return recorded
    return None


async def publish(
    w: Write, actor: Actor, business_id: str, number: str, text: str, content_type: str
) -> int:
    """Publish a valid definition's text; returns its version (the current one when the
    same text is published again: nothing is recorded)."""
    current = await locked_version(w, business_id, number)
    last = await published(w.conn, number, current)
    if last is not None and isinstance(last.event, BotPublished) and last.event.source == text:
        return current
    version = current + 1
    event = BotPublished(
        business_id=business_id,
        phone_number_id=number,
        version=version,
        source=text,
        content_type=content_type,
        actor=actor.name,
    )
    try:
        await w.append(
            bot_stream(number),
            [new(event, metadata=actor.metadata)],
            current - 1 if current else NO_STREAM,
        )
    except WrongExpectedVersion:
        # Only if the stream and the row disagree (the row lock orders publishes).
        raise conflict("bot_changed", "the bot changed meanwhile; try again") from None
    await w.conn.execute(
        "UPDATE directory_numbers SET bot_version = $2, updated_at = now()"
        " WHERE phone_number_id = $1",
        number,
        version,
    )
    await w.conn.execute("SELECT pg_notify('directory', '')")
    return version
