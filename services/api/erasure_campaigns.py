"""What the business's campaigns kept about an erased customer: the audience it gave (their
number, their template variables) in the campaign's definition and in the audience its
start evaluated, both recorded in clear in `campaigncmd-<id>` (a campaign is the business's,
not a customer's), and the campaigns' tables. Part of the erasure's sweep
(services/api/erasure.py), safe to run again.

A campaign not started forgets them (they are no longer in its audience); one started keeps
their place (its counts stay right) as `erased`, with nothing of theirs, and a send still
pending for them is skipped: an erased customer gets no campaign message.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

ERASED = "erased"
AUDIENCE_EVENTS = ["CampaignDefined", "CampaignAudience"]


def _theirs(recipient: Any, ids: set[str]) -> bool:
    if not isinstance(recipient, dict):
        return False
    return bool({str(recipient.get("to", "")), str(recipient.get("given", ""))} & ids)


def without(data: dict[str, Any], ids: set[str]) -> dict[str, Any] | None:
    """A CampaignDefined's or CampaignAudience's data (or a campaign's definition) without
    the customer; None when they are not in it."""
    if isinstance(data.get("recipients"), list):  # CampaignAudience: places kept
        recipients = data["recipients"]
        if not any(_theirs(r, ids) for r in recipients):
            return None
        kept = ("seq", "variant", "message_id", "skip_reason")
        return {
            **data,
            "recipients": [
                {**{k: r[k] for k in kept if k in r}, "to": ERASED, "given": ""}
                if _theirs(r, ids)
                else r
                for r in recipients
            ],
        }
    audience = data.get("audience")
    if isinstance(audience, dict) and isinstance(audience.get("recipients"), list):
        if not any(_theirs(r, ids) for r in audience["recipients"]):
            return None
        left = [r for r in audience["recipients"] if not _theirs(r, ids)]
        return {**data, "audience": {**audience, "recipients": left}}
    return None


def _json(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)


async def _rewrite(
    conn: asyncpg.Connection, select: str, update: str, wanted: list[str], *args: Any
) -> int:
    """Rewrite each row `select` finds (`id`, `audience`) without the customer."""
    changed = 0
    for row in await conn.fetch(select, *args):
        rewritten = without(_json(row["audience"]), set(wanted))
        if rewritten is not None:
            await conn.execute(update, row["id"], rewritten)
            changed += 1
    return changed


async def sweep(conn: asyncpg.Connection, business_id: str, ids: list[str], contact: str) -> int:
    """Remove the customer known by `ids` from the business's campaigns; returns how many
    rows changed."""
    wanted = sorted(set(ids) - {""})
    if not wanted:
        return 0
    # The audiences as recorded (in the store) and as the read model keeps them.
    changed = await _rewrite(
        conn,
        "SELECT global_position AS id, data AS audience FROM events"
        " WHERE split_part(stream_name, '-', 1) = 'campaigncmd' AND type = ANY($3::text[])"
        "   AND data->>'business_id' = $1"
        "   AND EXISTS (SELECT 1 FROM unnest($2::text[]) n WHERE strpos(data::text, n) > 0)",
        # the store's jsonb codec (init_connection) encodes the dict
        "UPDATE events SET data = $2::jsonb WHERE global_position = $1",
        wanted,
        business_id,
        wanted,
        AUDIENCE_EVENTS,
    )
    changed += await _rewrite(
        conn,
        "SELECT campaign_id AS id, definition AS audience FROM api_campaigns"
        " WHERE business_id = $1"
        "   AND EXISTS (SELECT 1 FROM unnest($2::text[]) n WHERE strpos(definition::text, n) > 0)",
        "UPDATE api_campaigns SET definition = $2::jsonb WHERE campaign_id = $1",
        wanted,
        business_id,
        wanted,
    )
    for sql in (
        "UPDATE api_campaign_recipients r SET customer = 'erased', given = '',"
        " conversation_id = NULL FROM api_campaigns c WHERE c.campaign_id = r.campaign_id"
        " AND c.business_id = $1 AND (r.customer = ANY($2::text[]) OR r.given = ANY($2::text[]))",
        "UPDATE campaign_sends s SET customer = 'erased', address = '', components = NULL,"
        " state = CASE WHEN s.state = 'pending' THEN 'skipped' ELSE s.state END"
        " FROM campaign_runs r WHERE r.campaign_id = s.campaign_id AND r.business_id = $1"
        " AND (s.customer = ANY($2::text[]) OR s.address = ANY($2::text[]))",
        "DELETE FROM campaign_reach WHERE business_id = $1 AND customer = ANY($2::text[])",
        "DELETE FROM campaign_marketing_limited WHERE business_id = $1"
        " AND customer = ANY($2::text[])",
    ):
        changed += int((await conn.execute(sql, business_id, wanted)).split()[-1])
    status = await conn.execute("DELETE FROM campaign_opt_outs WHERE contact_id = $1", contact)
    return changed + int(status.split()[-1])
