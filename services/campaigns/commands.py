"""What the business asked of its campaigns (the api's `campaigncmd-<id>` streams) into the
campaigns service's own tables, in the subscription's transaction: a draft's run, the
audience materialised at start (one `campaign_sends` row per recipient, pending or
skipped), and start (running, or scheduled with its due time), pause, resume, cancel."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from shared.events.business import CampaignAudience, CampaignCommanded, CampaignDefined
from shared.events.campaigns import CampaignRunning, campaign_stream
from shared.eventstore import RecordedEvent, new
from shared.eventstore.subscription import Batch

NAME = "campaigns.commands"
CATEGORY = "campaigncmd"


async def _defined(batch: Batch, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, CampaignDefined)
    await batch.conn.execute(
        "INSERT INTO campaign_runs (campaign_id, business_id, phone_number_id, state, variants)"
        " VALUES ($1, $2, $3, 'draft', $4::jsonb) ON CONFLICT (campaign_id) DO NOTHING",
        e.campaign_id,
        e.business_id,
        e.phone_number_id,
        e.variants,
    )


async def _audience(batch: Batch, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, CampaignAudience)
    await batch.conn.executemany(
        "INSERT INTO campaign_sends (campaign_id, seq, customer, variant, components,"
        " message_id, state, address) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)"
        " ON CONFLICT DO NOTHING",
        [
            (
                e.campaign_id,
                r["seq"],
                r.get("to", ""),
                r.get("variant", 0),
                r.get("components"),
                r.get("message_id"),
                "skipped" if r.get("skip_reason") else "pending",
                r.get("given", ""),
            )
            for r in e.recipients
        ],
    )


async def _commanded(batch: Batch, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, CampaignCommanded)
    conn: asyncpg.Connection = batch.conn
    if e.action == "start":
        due = datetime.fromisoformat(e.due_at.replace("Z", "+00:00")) if e.due_at else None
        scheduled = due is not None and due > datetime.now(UTC)
        await conn.execute(
            "UPDATE campaign_runs SET state = $2, due_at = $3, total = $4, updated_at = now()"
            " WHERE campaign_id = $1 AND state = 'draft'",
            e.campaign_id,
            "scheduled" if scheduled else "running",
            due if scheduled else None,
            e.total,
        )
        if not scheduled:
            await batch.store.append(
                campaign_stream(e.campaign_id),
                [
                    new(
                        CampaignRunning(
                            campaign_id=e.campaign_id, business_id=e.business_id, reason="started"
                        ),
                        "campaign-running",
                        e.campaign_id,
                        "started",
                    )
                ],
            )
    elif e.action == "pause":
        await conn.execute(
            "UPDATE campaign_runs SET state = 'paused', paused_by = 'business', updated_at = now()"
            " WHERE campaign_id = $1 AND state IN ('running', 'scheduled')",
            e.campaign_id,
        )
    elif e.action == "resume":
        # A scheduled start that was paused keeps its time; one whose time passed runs now.
        await conn.execute(
            "UPDATE campaign_runs SET state = CASE WHEN due_at > now() AND paused_by ="
            " 'business' AND total > 0 AND NOT EXISTS (SELECT 1 FROM campaign_sends s WHERE"
            " s.campaign_id = $1 AND s.state <> 'pending' AND s.state <> 'skipped')"
            " THEN 'scheduled' ELSE 'running' END, paused_by = NULL, updated_at = now()"
            " WHERE campaign_id = $1 AND state = 'paused'",
            e.campaign_id,
        )
    elif e.action == "cancel":
        await conn.execute(
            "UPDATE campaign_runs SET state = 'cancelled', due_at = NULL, updated_at = now()"
            " WHERE campaign_id = $1 AND state NOT IN ('completed', 'cancelled')",
            e.campaign_id,
        )


HANDLERS = {
    CampaignDefined: _defined,
    CampaignAudience: _audience,
    CampaignCommanded: _commanded,
}


async def project(batch: Batch) -> None:
    for rec in batch.events:
        handler = HANDLERS.get(type(rec.event))
        if handler is not None:
            await handler(batch, rec)  # type: ignore[operator]
