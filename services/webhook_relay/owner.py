"""Whose event is it: the business a catalogue event belongs to, so that it reaches only that
business's endpoints (decision 0008).

An event names its business when its writer knew it (dedup's MessageReceived and
ChangeReceived carry `business_id`); otherwise its number does: the event's
`phone_number_id`, or the conversation's, which is the part of the conversation id before
its first dot (`<phone_number_id>.<customer>`, and phone number ids are digits), looked up in
the directory (a number belongs to one business, ever); a WABA-level event without either is
its WABA's business. An event none of these place belongs to nobody and is sent nowhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from services.webhook_relay.catalogue import to_public
from services.webhook_relay.domain import DEFAULT_BUSINESS
from shared.eventstore import RecordedEvent


class NumberLike(Protocol):
    business_id: str


class Directory(Protocol):
    """What the relay needs of shared.directory.Directory."""

    async def number(self, phone_number_id: str) -> NumberLike | None: ...

    def business_of_waba(self, waba_id: str) -> str | None: ...


def claim(event: RecordedEvent, data: Mapping[str, Any]) -> tuple[str, str, str]:
    """Pure: (business id, phone number id, WABA id) as far as the event itself says."""
    inner = event.event
    business = str(getattr(inner, "business_id", "") or "")
    number = str(getattr(inner, "phone_number_id", "") or data.get("phone_number_id") or "")
    if not number:
        conversation = str(data.get("conversation_id") or "")
        head, dot, _ = conversation.partition(".")
        if dot and head.isdigit():
            number = head
    waba = str(getattr(inner, "waba_id", "") or data.get("waba_id") or "")
    return business, number, waba


async def owners_of(
    events: list[RecordedEvent],
    directory: Directory | None,
    conversations: Mapping[str, str] | None = None,
) -> dict[uuid.UUID, str | None]:
    """The business of each catalogue event (None: nobody's). Without a directory (the
    relay's own tests) every event is the default business's."""
    owners: dict[uuid.UUID, str | None] = {}
    numbers: dict[str, str | None] = {}
    for event in events:
        public = to_public(event, (conversations or {}).get(event.stream))
        if public is None:
            continue
        if directory is None:
            owners[event.id] = DEFAULT_BUSINESS
            continue
        business, number, waba = claim(event, public.data)
        if not business and number:
            if number not in numbers:
                found = await directory.number(number)
                numbers[number] = found.business_id if found is not None else None
            business = numbers[number] or ""
        if not business and waba:
            business = directory.business_of_waba(waba) or ""
        owners[event.id] = business or None
    return owners
