"""How each recipient's send ended, from outbound's outbox (`outbox-<message id>`; the
recipients' ids start with `cmp_`): SendSucceeded is sent, SendFailed is failed with Meta's
code (final for this campaign: 131049, 131050, 131026, ...; 131049 also keeps every
campaign's marketing from that customer for 24 h, `campaign_marketing_limited`), except
Meta's messaging-limit refusals, which pause the campaign (`messaging_limit`) and put that
recipient back in the queue under a new message id. A campaign whose recipients are all
sent, failed or skipped is completed (CampaignCompleted, once). All in the subscription's
transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from shared.events.campaigns import (
    CampaignCompleted,
    CampaignPaused,
    RecipientRequeued,
    campaign_stream,
    recipient_message_id,
)
from shared.events.outbound import SendFailed, SendSucceeded
from shared.eventstore import EventStore, new, stream_id
from shared.eventstore.subscription import Batch

NAME = "campaigns.outcomes"
CATEGORY = "outbox"
# Meta's refusals for the business portfolio's messaging limit (platform-facts, part 2).
LIMIT_CODES = {131048, 131064}
LIMIT_PAUSE = timedelta(minutes=15)  # when the window's end is not known here
MARKETING_LIMIT = 131049  # Meta's per-user marketing limit: not retried within 24 h


async def _limit_refused(batch: Batch, row: asyncpg.Record, code: int | None) -> None:
    conn = batch.conn
    attempt = row["attempt"] + 1
    again = recipient_message_id(row["campaign_id"], row["seq"], attempt)
    await conn.execute(
        "UPDATE campaign_sends SET state = 'pending', attempt = $3, message_id = $4"
        " WHERE campaign_id = $1 AND seq = $2",
        row["campaign_id"],
        row["seq"],
        attempt,
        again,
    )
    until = datetime.now(UTC) + LIMIT_PAUSE
    paused = await conn.fetchval(
        "UPDATE campaign_runs SET state = 'paused', paused_by = 'messaging_limit', due_at = $2,"
        " updated_at = now() WHERE campaign_id = $1 AND state = 'running' RETURNING business_id",
        row["campaign_id"],
        until,
    )
    business = row["business_id"]
    events = [
        new(
            RecipientRequeued(
                campaign_id=row["campaign_id"], business_id=business, seq=row["seq"],
                message_id=again,
            ),
            "requeued", row["campaign_id"], str(row["seq"]), str(attempt),
        )
    ]  # fmt: skip
    if paused is not None:
        events.append(
            new(
                CampaignPaused(
                    campaign_id=row["campaign_id"], business_id=business,
                    reason="messaging_limit", until=until.isoformat(), code=code,
                ),
            )
        )  # fmt: skip
    await batch.store.append(campaign_stream(row["campaign_id"]), events)


async def _marketing_limited(conn: asyncpg.Connection, business: str, customer: str) -> None:
    """Meta's per-user marketing limit: no campaign sends that customer marketing for the
    next 24 h (the runner skips them, `marketing_limit`)."""
    await conn.execute(
        "INSERT INTO campaign_marketing_limited (business_id, customer, limited_at)"
        " VALUES ($1, $2, now()) ON CONFLICT (business_id, customer)"
        " DO UPDATE SET limited_at = now()",
        business,
        customer,
    )


async def complete_if_done(conn: asyncpg.Connection, store: EventStore, campaign: str) -> None:
    """CampaignCompleted (once) when no recipient is pending or dispatched any more."""
    row = await conn.fetchrow(
        "SELECT r.business_id, r.state,"
        " count(*) FILTER (WHERE s.state IN ('pending', 'dispatched')) AS open,"
        " count(*) FILTER (WHERE s.state = 'sent') AS sent,"
        " count(*) FILTER (WHERE s.state = 'failed') AS failed,"
        " count(*) FILTER (WHERE s.state = 'skipped') AS skipped"
        " FROM campaign_runs r JOIN campaign_sends s USING (campaign_id)"
        " WHERE r.campaign_id = $1 GROUP BY r.business_id, r.state",
        campaign,
    )
    if row is None or row["open"] or row["state"] not in ("running", "paused"):
        return
    await conn.execute(
        "UPDATE campaign_runs SET state = 'completed', due_at = NULL, updated_at = now()"
        " WHERE campaign_id = $1",
        campaign,
    )
    done = CampaignCompleted(
        campaign_id=campaign,
        business_id=row["business_id"],
        sent=row["sent"],
        failed=row["failed"],
        skipped=row["skipped"],
    )
    await store.append(campaign_stream(campaign), [new(done, "completed", campaign)])


async def project(batch: Batch) -> None:
    touched: list[str] = []
    for rec in batch.events:
        if not isinstance(rec.event, SendSucceeded | SendFailed):
            continue
        message = stream_id(rec.stream)
        if not message.startswith("cmp_"):
            continue
        row = await batch.conn.fetchrow(
            "SELECT s.*, r.business_id FROM campaign_sends s JOIN campaign_runs r"
            " USING (campaign_id) WHERE s.message_id = $1",
            message,
        )
        if row is None or row["state"] not in ("pending", "dispatched"):
            continue  # an earlier attempt's id, or already known
        if isinstance(rec.event, SendFailed) and rec.event.code in LIMIT_CODES:
            await _limit_refused(batch, row, rec.event.code)
            continue
        if isinstance(rec.event, SendFailed) and rec.event.code == MARKETING_LIMIT:
            await _marketing_limited(batch.conn, row["business_id"], row["customer"])
        sent = isinstance(rec.event, SendSucceeded)
        await batch.conn.execute(
            "UPDATE campaign_sends SET state = $2, code = $3 WHERE campaign_id = $1 AND seq = $4",
            row["campaign_id"],
            "sent" if sent else "failed",
            None if sent else rec.event.code,  # type: ignore[union-attr]
            row["seq"],
        )
        if row["campaign_id"] not in touched:
            touched.append(row["campaign_id"])
    for campaign in touched:
        await complete_if_done(batch.conn, batch.store, campaign)
