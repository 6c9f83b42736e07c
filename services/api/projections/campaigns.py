"""The campaigns read model: `api_campaigns` (status, why it paused) and
`api_campaign_recipients` (each member of the audience and how far its message got).
From the api's own commands (campaigncmd-<id>: defined, audience, start / pause / resume /
cancel), the campaigns service's events (campaign-<id>: running, paused by a limit,
requeued, completed), and each recipient's message under its message id: outbound's
MessageSent and SendFailed, then Meta's statuses (LifecycleChanged, by wamid), and
`replied` once the customer writes in that conversation after it was sent. Statuses only
move forward; a failure is final."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.events.business import CampaignAudience, CampaignCommanded, CampaignDefined
from shared.events.campaigns import (
    CampaignCompleted,
    CampaignPaused,
    CampaignRunning,
    RecipientRequeued,
    RecipientSkipped,
)
from shared.events.conversation import CustomerWrote
from shared.events.outbound import LifecycleChanged, MessageSent, SendFailed
from shared.eventstore import RecordedEvent, stream_id
from shared.eventstore.subscription import Batch

NAME = "api.campaigns"
TABLES = ("api_campaigns", "api_campaign_recipients")
RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}
LIFECYCLE = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


async def _defined(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, CampaignDefined)
    definition = {
        "variants": e.variants,
        "audience": e.audience,
        "variables": e.variables,
        "schedule_at": e.schedule_at,
    }
    await conn.execute(
        "INSERT INTO api_campaigns (campaign_id, business_id, name, phone_number_id, status,"
        " definition, version, created_at, updated_at, sort_position)"
        " VALUES ($1, $2, $3, $4, 'draft', $5::jsonb, $6, $7, $7, $8)"
        " ON CONFLICT (campaign_id) DO NOTHING",
        e.campaign_id,
        e.business_id,
        e.name,
        e.phone_number_id,
        definition,
        rec.version,
        rec.recorded_at,
        rec.position.global_position,
    )


async def _audience(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, CampaignAudience)
    number = await conn.fetchval(
        "SELECT phone_number_id FROM api_campaigns WHERE campaign_id = $1", e.campaign_id
    )
    await conn.executemany(
        "INSERT INTO api_campaign_recipients (campaign_id, seq, customer, given, variant,"
        " message_id, conversation_id, status, skip_reason) VALUES ($1, $2, $3, $4, $5, $6,"
        " $7, $8, $9) ON CONFLICT DO NOTHING",
        [
            (
                e.campaign_id,
                r["seq"],
                r.get("to", ""),
                r.get("given", ""),
                r.get("variant", 0),
                r.get("message_id"),
                f"{number}.{r['to']}" if r.get("to") and not r.get("skip_reason") else None,
                "skipped" if r.get("skip_reason") else "queued",
                r.get("skip_reason"),
            )
            for r in e.recipients
        ],
    )
    await _version(conn, e.campaign_id, rec)


async def _version(conn: asyncpg.Connection, campaign: str, rec: RecordedEvent) -> None:
    await conn.execute(
        "UPDATE api_campaigns SET version = GREATEST(version, $2), updated_at = $3"
        " WHERE campaign_id = $1",
        campaign,
        rec.version,
        rec.recorded_at,
    )


async def _commanded(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, CampaignCommanded)
    due = _time(e.due_at)
    status = {
        "start": "scheduled" if due is not None and due > rec.recorded_at else "running",
        "pause": "paused",
        "resume": "running",
        "cancel": "cancelled",
    }.get(e.action)
    if e.action == "resume":
        # As the campaigns service does: a scheduled start paused before its time is
        # scheduled again (its time kept); one whose time passed runs.
        schedule = await conn.fetchval(
            "SELECT definition->>'schedule_at' FROM api_campaigns WHERE campaign_id = $1",
            e.campaign_id,
        )
        at = _time(schedule)
        if at is not None and at > rec.recorded_at:
            status = "scheduled"
    if status is not None:
        await conn.execute(
            "UPDATE api_campaigns SET status = $2, paused_reason = NULL, updated_at = $3"
            " WHERE campaign_id = $1 AND status NOT IN ('completed', 'cancelled')",
            e.campaign_id,
            status,
            rec.recorded_at,
        )
    await _version(conn, e.campaign_id, rec)


async def _running(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, CampaignRunning)
    await conn.execute(
        "UPDATE api_campaigns SET status = 'running', paused_reason = NULL, updated_at = $2"
        " WHERE campaign_id = $1 AND (status = 'scheduled' OR (status = 'paused'"
        " AND paused_reason IS NOT NULL))",
        e.campaign_id,
        rec.recorded_at,
    )


async def _paused(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, CampaignPaused)
    await conn.execute(
        "UPDATE api_campaigns SET status = 'paused', paused_reason = $2, updated_at = $3"
        " WHERE campaign_id = $1 AND status = 'running'",
        e.campaign_id,
        e.reason,
        rec.recorded_at,
    )


async def _completed(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, CampaignCompleted)
    await conn.execute(
        "UPDATE api_campaigns SET status = 'completed', paused_reason = NULL, updated_at = $2"
        " WHERE campaign_id = $1 AND status <> 'cancelled'",
        e.campaign_id,
        rec.recorded_at,
    )


async def _requeued(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, RecipientRequeued)
    await conn.execute(
        "UPDATE api_campaign_recipients SET message_id = $3, wamid = NULL, status = 'queued',"
        " error = NULL WHERE campaign_id = $1 AND seq = $2",
        e.campaign_id,
        e.seq,
        e.message_id,
    )


async def _skipped(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, RecipientSkipped)
    await conn.execute(
        "UPDATE api_campaign_recipients SET status = 'skipped', skip_reason = $3"
        " WHERE campaign_id = $1 AND seq = $2 AND status = 'queued'",
        e.campaign_id,
        e.seq,
        e.reason,
    )


async def _advance(conn: asyncpg.Connection, column: str, key: str, status: str) -> None:
    await conn.execute(
        f"UPDATE api_campaign_recipients SET status = $2 WHERE {column} = $1"
        " AND status NOT IN ('failed', 'skipped')"
        " AND (CASE status WHEN 'queued' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2"
        " ELSE 3 END) < $3",
        key,
        status,
        RANK[status],
    )


async def _sent(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, MessageSent)
    if not e.command_id.startswith("cmp_"):
        return
    await conn.execute(
        "UPDATE api_campaign_recipients SET wamid = $2 WHERE message_id = $1",
        e.command_id,
        e.wamid,
    )
    await _advance(conn, "message_id", e.command_id, "sent")


async def _failed(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, SendFailed)
    message = stream_id(rec.stream)
    if not message.startswith("cmp_"):
        return
    await conn.execute(
        "UPDATE api_campaign_recipients SET status = 'failed', error = $2::jsonb"
        " WHERE message_id = $1 AND status <> 'skipped'",
        message,
        {"code": e.code, "title": e.title},
    )


async def _lifecycle(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, LifecycleChanged)
    status = LIFECYCLE.get(e.status)
    if status is None:
        return
    if status == "failed":
        first = e.errors[0] if e.errors and isinstance(e.errors[0], dict) else {}
        error = {"code": first.get("code"), "title": str(first.get("title", ""))}
        await conn.execute(
            "UPDATE api_campaign_recipients SET status = 'failed', error = $2::jsonb"
            " WHERE wamid = $1 AND status <> 'skipped'",
            e.wamid,
            error,
        )
        return
    await _advance(conn, "wamid", e.wamid, status)


async def _customer_wrote(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    # The customer answered: every campaign message already sent to them in this
    # conversation counts as replied.
    await conn.execute(
        "UPDATE api_campaign_recipients SET replied = true WHERE conversation_id = $1"
        " AND wamid IS NOT NULL AND NOT replied",
        stream_id(rec.stream),
    )


HANDLERS = {
    CampaignDefined: _defined,
    CampaignAudience: _audience,
    CampaignCommanded: _commanded,
    CampaignRunning: _running,
    CampaignPaused: _paused,
    CampaignCompleted: _completed,
    RecipientRequeued: _requeued,
    RecipientSkipped: _skipped,
    MessageSent: _sent,
    SendFailed: _failed,
    LifecycleChanged: _lifecycle,
    CustomerWrote: _customer_wrote,
}
TYPES = tuple(HANDLERS)  # what the subscription opens of the log


async def project(batch: Batch) -> None:
    for rec in batch.events:
        handler = HANDLERS.get(type(rec.event))
        if handler is not None:
            await handler(batch.conn, rec)  # type: ignore[operator]
