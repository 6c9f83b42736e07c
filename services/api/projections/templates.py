"""The templates read model (`api_templates`): each template of a business's WABAs as the
last sync or creation recorded it (TemplateRecorded), moved on by Meta's template webhooks
as dedup recorded them (ChangeReceived in `account-<waba_id>`): the status
(`message_template_status_update`), the quality (`message_template_quality_update`) and
the category (`template_category_update`). A webhook about a template the business never
synced changes nothing: the next sync brings it whole."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.events.business import TemplateRecorded
from shared.events.dedup import ChangeReceived
from shared.eventstore import RecordedEvent
from shared.eventstore.subscription import Batch

NAME = "api.templates"
TABLES = ("api_templates",)
TYPES = (TemplateRecorded, ChangeReceived)  # what the subscription opens of the log

_UPSERT = """
INSERT INTO api_templates AS t (template_id, business_id, waba_id, name, language, category,
    status, parameter_format, components, quality, created_here_at, updated_at, sort_position)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13)
ON CONFLICT (template_id) DO UPDATE SET
    business_id = EXCLUDED.business_id, waba_id = EXCLUDED.waba_id, name = EXCLUDED.name,
    language = EXCLUDED.language, category = EXCLUDED.category, status = EXCLUDED.status,
    parameter_format = EXCLUDED.parameter_format, components = EXCLUDED.components,
    quality = COALESCE(EXCLUDED.quality, t.quality),
    created_here_at = COALESCE(t.created_here_at, EXCLUDED.created_here_at),
    updated_at = EXCLUDED.updated_at
"""


async def _recorded(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, TemplateRecorded)
    await conn.execute(
        _UPSERT,
        e.template_id,
        e.business_id,
        e.waba_id,
        e.name,
        e.language,
        e.category,
        e.status,
        e.parameter_format or "POSITIONAL",
        e.components,
        e.quality,
        rec.recorded_at if e.origin == "created" else None,
        rec.recorded_at,
        rec.position.global_position,
    )


# Meta's field -> (the value's key, the column it sets).
_CHANGES = {
    "message_template_status_update": ("event", "status"),
    "message_template_quality_update": ("new_quality_score", "quality"),
    "template_category_update": ("new_category", "category"),
}


def template_change(e: ChangeReceived) -> tuple[str, str, str, str | None] | None:
    """(template id, column, value, reason) of a template webhook, None for anything else."""
    if e.field not in _CHANGES:
        return None
    value: Any = e.value.get("value") if isinstance(e.value, dict) else None
    if not isinstance(value, dict):
        return None
    key, column = _CHANGES[e.field]
    template_id, new = value.get("message_template_id"), value.get(key)
    if template_id is None or not isinstance(new, str) or not new:
        return None
    reason = value.get("reason") if column == "status" else None
    return str(template_id), column, new.upper(), str(reason) if reason else None


async def _changed(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, ChangeReceived)
    change = template_change(e)
    if change is None:
        return
    template_id, column, value, reason = change
    # The WABA must be the template's: another app's delivery cannot move our templates.
    await conn.execute(
        f"UPDATE api_templates SET {column} = $3, updated_at = $4,"
        " reason = CASE WHEN $5::text IS NULL THEN reason ELSE $5 END"
        " WHERE template_id = $1 AND waba_id = $2",
        template_id,
        e.waba_id,
        value,
        rec.recorded_at,
        reason,
    )


async def project(batch: Batch) -> None:
    for rec in batch.events:
        if isinstance(rec.event, TemplateRecorded):
            await _recorded(batch.conn, rec)
        elif isinstance(rec.event, ChangeReceived):
            await _changed(batch.conn, rec)
