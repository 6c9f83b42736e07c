"""An outgoing message's lifecycle, folded from its events in whatever order they arrived.

Statuses can come out of order (sent after read) and "delivered" can be skipped: the
lifecycle only moves forward, and a failure is final.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.events.dedup import StatusReceived
from shared.events.outbound import LifecycleChanged, MessageSent
from shared.eventstore import Event

RANK = {"accepted": 0, "sent": 1, "delivered": 2, "read": 3, "played": 4}


@dataclass
class Lifecycle:
    status: str = "unknown"
    recorded: str = "unknown"  # the last status outbound recorded as LifecycleChanged
    errors: list[dict[str, Any]] = field(default_factory=list)
    conversation_id: str = ""

    @property
    def advanced(self) -> bool:
        return self.status != self.recorded


def fold(events: list[Event]) -> Lifecycle:
    life = Lifecycle()
    for event in events:
        match event:
            case MessageSent():
                life.conversation_id = event.conversation_id or life.conversation_id
                _advance(life, "accepted")
            case StatusReceived(status="failed"):
                life.conversation_id = life.conversation_id or event.conversation_id
                life.status = "failed"
                life.errors.extend(event.errors)
            case StatusReceived():
                life.conversation_id = life.conversation_id or event.conversation_id
                _advance(life, event.status)
            case LifecycleChanged():
                life.recorded = event.status
    return life


def _advance(life: Lifecycle, status: str) -> None:
    if life.status == "failed" or status not in RANK:
        return
    if RANK[status] > RANK.get(life.status, -1):
        life.status = status
