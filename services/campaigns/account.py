"""What Meta reports about a WABA that changes how campaigns run (ChangeReceived in
`account-<waba_id>`, recorded by dedup):
- the messaging limit: `business_capability_update` carries
  `max_daily_conversations_per_business` (250, 2000, 10000, 100000, or -1 for unlimited)
  for the business portfolio owning the WABA; the latest is kept in `campaign_tiers` and
  wins over the limit set on the business;
- a template Meta paused, disabled or rejected (`message_template_status_update`): every
  running or scheduled campaign sending it is paused (`paused_reason: "template_paused"`,
  ...) before its next recipients are refused one by one; the business resumes it."""

from __future__ import annotations

from typing import Any

from shared.events.campaigns import CampaignPaused, campaign_stream
from shared.events.dedup import ChangeReceived
from shared.eventstore import new
from shared.eventstore.subscription import Batch

NAME = "campaigns.account"
CATEGORY = "account"
FIELD = "business_capability_update"
TEMPLATE_STATUS = "message_template_status_update"
# A template in one of these can no longer be sent.
STOPPED = {
    "PAUSED": "template_paused",
    "DISABLED": "template_disabled",
    "REJECTED": "template_rejected",
    "DELETED": "template_deleted",
    "ARCHIVED": "template_archived",
    "LIMIT_EXCEEDED": "template_limit_exceeded",
}


def reported_limit(value: Any) -> tuple[bool, int | None]:
    """(whether the change says the limit, the limit: None for unlimited)."""
    inner = value.get("value") if isinstance(value, dict) else None
    if not isinstance(inner, dict):
        return False, None
    limit = inner.get("max_daily_conversations_per_business")
    if isinstance(limit, bool) or not isinstance(limit, int):
        return False, None
    return True, (None if limit < 0 else limit)


def stopped_template(value: Any) -> tuple[str, str] | None:
    """(template id, paused reason) when Meta stopped a template, else None."""
    inner = value.get("value") if isinstance(value, dict) else None
    if not isinstance(inner, dict) or inner.get("message_template_id") is None:
        return None
    reason = STOPPED.get(str(inner.get("event", "")).upper())
    return (str(inner["message_template_id"]), reason) if reason else None


async def _template_stopped(batch: Batch, e: ChangeReceived) -> None:
    stopped = stopped_template(e.value)
    if stopped is None:
        return
    template_id, reason = stopped
    rows = await batch.conn.fetch(
        "UPDATE campaign_runs SET state = 'paused', paused_by = 'template', due_at = NULL,"
        " updated_at = now() WHERE state IN ('running', 'scheduled')"
        " AND variants @> $1::jsonb RETURNING campaign_id, business_id",
        [{"id": template_id}],  # jsonb through the pool's codec
    )
    for row in rows:
        paused = CampaignPaused(
            campaign_id=row["campaign_id"], business_id=row["business_id"], reason=reason
        )
        await batch.store.append(campaign_stream(row["campaign_id"]), [new(paused)])


async def project(batch: Batch) -> None:
    for rec in batch.events:
        e = rec.event
        if isinstance(e, ChangeReceived) and e.field == TEMPLATE_STATUS:
            await _template_stopped(batch, e)
            continue
        if not isinstance(e, ChangeReceived) or e.field != FIELD:
            continue
        said, limit = reported_limit(e.value)
        if not said:
            continue
        business = await batch.conn.fetchval(
            "SELECT business_id FROM directory_wabas WHERE waba_id = $1", e.waba_id
        )
        if business is None:
            continue
        await batch.conn.execute(
            "INSERT INTO campaign_tiers (business_id, messaging_limit, learned_at)"
            " VALUES ($1, $2, $3) ON CONFLICT (business_id) DO UPDATE SET"
            " messaging_limit = EXCLUDED.messaging_limit, learned_at = EXCLUDED.learned_at"
            " WHERE campaign_tiers.learned_at <= EXCLUDED.learned_at",
            business,
            limit,
            rec.recorded_at,
        )
