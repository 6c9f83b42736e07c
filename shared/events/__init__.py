"""The event catalogue: every event type the services record, one module per writing
service (the one writer of those streams). Events are the contract between services: the
relay, the read models and the audits read them, so they live here, beside the broker's
message schemas, rather than inside the writer's folder (docs/decisions/0005-events-in-shared.md).
"""

from __future__ import annotations

from shared.events import (
    business,
    campaigns,
    conversation,
    dedup,
    media,
    outbound,
    webhook_relay,
)
from shared.eventstore import Event
from shared.eventstore.mapper import Upcaster

# Writer -> its module, in the order of the pipeline.
MODULES = {
    "dedup": dedup,
    "conversation": conversation,
    "media": media,
    "outbound": outbound,
    "webhook_relay": webhook_relay,
    "api": business,
    "campaigns": campaigns,
}
ALL: tuple[type[Event], ...] = tuple(cls for m in MODULES.values() for cls in m.EVENTS)
UPCASTERS: tuple[Upcaster, ...] = conversation.UPCASTERS
