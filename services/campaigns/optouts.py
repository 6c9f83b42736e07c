"""The contacts' marketing opt-outs, for the runner (`campaign_opt_outs`), from the whole
log: the customer's own words as the bot acted on them (BotActed opt_out / opt_in),
Meta's `user_preferences` (MarketingPreferenceReceived), the business's PATCH
(ContactUpdated.marketing_opt_out) and Meta's 131050 (SendFailed: the customer stopped
marketing). The audience skips opted-out contacts at start; this keeps the runner from
sending a MARKETING template to one who opted out after it (skipped, `opted_out`)."""

from __future__ import annotations

import asyncpg
import msgspec

from shared.events.business import ContactUpdated, contact_id_for
from shared.events.conversation import BotActed
from shared.events.dedup import MarketingPreferenceReceived
from shared.events.outbound import SendFailed
from shared.eventstore import RecordedEvent
from shared.eventstore.subscription import Batch

NAME = "campaigns.optouts"
STOPPED_MARKETING = 131050
# What the subscription opens of the log (the events `_opt_out_of` reads).
TYPES = (MarketingPreferenceReceived, BotActed, ContactUpdated, SendFailed)


async def _set(conn: asyncpg.Connection, contact: str, opted_out: bool, rec: RecordedEvent) -> None:
    await conn.execute(
        "INSERT INTO campaign_opt_outs (contact_id, opted_out, position) VALUES ($1, $2, $3)"
        " ON CONFLICT (contact_id) DO UPDATE SET opted_out = EXCLUDED.opted_out,"
        " position = EXCLUDED.position WHERE campaign_opt_outs.position < EXCLUDED.position",
        contact,
        opted_out,
        rec.position.global_position,
    )


async def _opt_out_of(conn: asyncpg.Connection, rec: RecordedEvent) -> tuple[str, bool] | None:
    """(contact id, opted out) when the event says one, else None."""
    e = rec.event
    if isinstance(e, MarketingPreferenceReceived):
        if e.business_id and e.customer and e.opted_out is not None:
            return contact_id_for(e.business_id, e.customer), e.opted_out
    elif isinstance(e, BotActed):
        kinds = [a.get("kind") for a in e.actions if a.get("kind") in ("opt_out", "opt_in")]
        if kinds and e.contact_id:
            return e.contact_id, kinds[-1] == "opt_out"
    elif isinstance(e, ContactUpdated):
        if e.marketing_opt_out is not msgspec.UNSET:
            return e.contact_id, bool(e.marketing_opt_out)
    elif isinstance(e, SendFailed) and e.code == STOPPED_MARKETING and "." in e.conversation_id:
        number, customer = e.conversation_id.split(".", 1)
        business = await conn.fetchval(
            "SELECT business_id FROM directory_numbers WHERE phone_number_id = $1", number
        )
        if business is not None:
            return contact_id_for(business, customer), True
    return None


async def project(batch: Batch) -> None:
    for rec in batch.events:
        found = await _opt_out_of(batch.conn, rec)
        if found is not None:
            await _set(batch.conn, found[0], found[1], rec)
