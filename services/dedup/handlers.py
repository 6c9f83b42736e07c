"""Record each item of a delivery once, keyed by its natural id, and forward it.

Idempotency comes from deterministic event ids (a message's id is derived from its wamid): a
redelivery, hours later or on another instance, appends nothing new. Items are forwarded
again on a redelivery, because a crash may have struck between the commit and the publish;
downstream handlers recognise what they have already done.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import msgspec

from services.dedup.split import Change, Inbound, Status, split_delivery
from shared.broker.bus import Context, Publish
from shared.eventstore import Appended, EventStore, NewEvent, StreamWrite, event_id_for
from shared.observability import metrics
from shared.schemas import CustomerMessage, StatusUpdate, WebhookDelivery

_decode = msgspec.json.Decoder().decode
log = logging.getLogger("dedup")
KNOWN_STATUSES = {"sent", "delivered", "read", "played", "failed", "deleted", "warning"}


def inbox_stream(conversation_id: str) -> str:
    return f"inbox-{conversation_id}"


def message_stream(wamid: str) -> str:
    return f"message-{wamid}"


async def record_delivery(
    store: EventStore, delivery: WebhookDelivery, ctx: Context
) -> list[Publish]:
    meta = {**ctx.metadata(), "delivery_id": delivery.delivery_id}
    if not delivery.valid_json:
        await store.append(
            f"quarantine-{delivery.delivery_id}",
            [
                NewEvent(
                    "MalformedDeliveryReceived",
                    {
                        "delivery_id": delivery.delivery_id,
                        "received_at": delivery.received_at,
                        "body_base64": delivery.body,
                        # jsonb cannot hold U+0000: a NUL in the preview would make the
                        # append fail on every attempt and the delivery end in dead letters.
                        "body_preview": base64.b64decode(delivery.body)[:200]
                        .decode("utf-8", "replace")
                        .replace("\x00", "\ufffd"),
                    },
                    meta,
                    event_id_for("malformed", delivery.delivery_id),
                )
            ],
        )
        return []

    payload = _decode(delivery.body)
    if "\\u0000" in delivery.body:  # rare: only then pay for the walk
        payload = _without_nul(payload)
    items = split_delivery(payload)
    # One statement for the whole delivery: atomic, and one round trip however many items.
    writes = [_write_for(item, delivery, meta) for item in items]
    results = await store.append_batch(writes)
    outputs: list[Publish] = []
    for item, write, [appended] in zip(items, writes, results, strict=True):
        if isinstance(item, Inbound):
            outputs.append(await _message_recorded(store, item, write, appended))
        elif isinstance(item, Status):
            outputs.append(_status_recorded(item, appended))
        elif appended.duplicate:
            metrics.dedup_duplicates.labels("change").inc()
    return outputs


def _write_for(
    item: Inbound | Status | Change, delivery: WebhookDelivery, meta: dict[str, Any]
) -> StreamWrite:
    if isinstance(item, Inbound):
        return _message_write(item, delivery, meta)
    if isinstance(item, Status):
        return _status_write(item, delivery, meta)
    return _change_write(item, delivery, meta)


def _without_nul(node: Any) -> Any:
    """PostgreSQL's jsonb cannot store U+0000 (a valid JSON escape): a delivery carrying one
    would fail on every attempt and never be recorded, so it is stored as U+FFFD instead."""
    if isinstance(node, str):
        return node.replace("\x00", "\ufffd")
    if isinstance(node, dict):
        return {_without_nul(k): _without_nul(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_nul(v) for v in node]
    return node


def _message_write(item: Inbound, delivery: WebhookDelivery, meta: dict[str, Any]) -> StreamWrite:
    data = {
        "conversation_id": item.conversation_id,
        "waba_id": item.waba_id,
        "phone_number_id": item.phone_number_id,
        "display_phone_number": item.display_phone_number,
        "customer": item.customer,
        "customer_name": item.customer_name,
        "wamid": item.wamid,
        "type": item.type,
        "timestamp": item.timestamp,
        "message": item.message,
        "contact": item.contact,
        "delivery_id": delivery.delivery_id,
        "received_at": delivery.received_at,
    }
    return StreamWrite(
        inbox_stream(item.conversation_id),
        [NewEvent("MessageReceived", data, meta, event_id_for("message", item.wamid))],
    )


async def _message_recorded(
    store: EventStore, item: Inbound, write: StreamWrite, appended: Appended
) -> Publish:
    data = write.events[0].data
    log.info(
        "message recorded",
        extra={
            "fields": {
                "conversation": item.conversation_id,
                "seq": appended.stream_version,
                "type": item.type,
                "duplicate": appended.duplicate,
            }
        },
    )
    if appended.duplicate:
        # Forwarded as first recorded (its received_at, its delivery), not as redelivered.
        metrics.dedup_duplicates.labels("message").inc()
        stored = await store.find(appended.event_id)
        data = stored.data if stored else data
    return Publish(
        "conversation",
        item.conversation_id,
        CustomerMessage(
            conversation_id=item.conversation_id,
            seq=appended.stream_version,
            wamid=item.wamid,
            event=data,
        ),
    )


def _status_write(item: Status, delivery: WebhookDelivery, meta: dict[str, Any]) -> StreamWrite:
    codes = ",".join(
        str(e.get("code")) for e in item.raw.get("errors") or [] if isinstance(e, dict)
    )
    data = {
        "wamid": item.wamid,
        "status": item.status,
        "timestamp": item.timestamp,
        "recipient_id": item.recipient_id,
        "conversation_id": item.conversation_id,
        "phone_number_id": item.phone_number_id,
        "errors": item.raw.get("errors") or [],
        "raw": item.raw,
        "delivery_id": delivery.delivery_id,
    }
    return StreamWrite(
        message_stream(item.wamid),
        [
            NewEvent(
                "StatusReceived",
                data,
                meta,
                event_id_for("status", item.wamid, item.status, item.timestamp, codes),
            )
        ],
    )


def _status_recorded(item: Status, appended: Appended) -> Publish:
    if appended.duplicate:
        metrics.dedup_duplicates.labels("status").inc()
    else:
        metrics.statuses_received.labels(
            item.status if item.status in KNOWN_STATUSES else "other"
        ).inc()
    return Publish(
        "outbound",
        item.conversation_id,
        StatusUpdate(conversation_id=item.conversation_id, wamid=item.wamid, status=item.status),
    )


def _change_write(item: Change, delivery: WebhookDelivery, meta: dict[str, Any]) -> StreamWrite:
    return StreamWrite(
        f"account-{item.waba_id}",
        [
            NewEvent(
                "ChangeReceived",
                {
                    "waba_id": item.waba_id,
                    "field": item.field,
                    "value": item.value,
                    "delivery_id": delivery.delivery_id,
                },
                meta,
                event_id_for("change", item.waba_id, item.field, item.fingerprint),
            )
        ],
    )
