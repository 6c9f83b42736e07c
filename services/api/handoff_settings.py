"""A business's handoff settings (`GET | PUT /v1/handoff/settings`, an extension): the idle
hand-back time. The conversation's idle timer (services/conversation/idle.py) reads the
table on every claim, so a change applies to every conversation a person has from the next
poll on, measured from its last activity."""

from __future__ import annotations

from typing import Any

from services.api import directory, inputs
from services.api import schemas as s
from services.api.routes import Call, Reply
from services.api.writes import write
from shared.events.business import HandoffSettingsChanged
from shared.eventstore import new


async def get_settings(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    return Reply(200, await _settings(call.deps.pool, call))


async def put_settings(call: Call) -> Reply:
    body, _ = await inputs.body(call.request, s.PutHandoffSettings)
    business = call.business_id
    event = HandoffSettingsChanged(
        business_id=business, idle_seconds=body.idle_seconds, actor=call.actor.name
    )
    async with write(call.deps.pool) as w:
        await directory.record(w, business, [new(event, metadata=call.actor.metadata)])
        await w.conn.execute(
            "INSERT INTO handoff_settings (business_id, idle_seconds) VALUES ($1, $2)"
            " ON CONFLICT (business_id) DO UPDATE SET idle_seconds = EXCLUDED.idle_seconds,"
            " updated_at = now()",
            business,
            body.idle_seconds,
        )
    return Reply(200, await _settings(call.deps.pool, call))


async def _settings(db: Any, call: Call) -> s.HandoffSettings:
    own = await db.fetchval(
        "SELECT idle_seconds FROM handoff_settings WHERE business_id = $1", call.business_id
    )
    effective = own if own is not None else int(call.deps.settings.handback_idle_seconds)
    return s.HandoffSettings(idle_seconds=own, effective_idle_seconds=effective or None)
