"""Record each item of a delivery once, keyed by its natural id, and forward it.

Idempotency comes from deterministic event ids (a message's id is derived from its wamid): a
redelivery, hours later or on another instance, appends nothing new. Items are forwarded
again on a redelivery, because a crash may have struck between the commit and the publish;
downstream handlers recognise what they have already done.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from services.dedup.identity import Epochs, Identities, never_erased
from services.dedup.split import Change, Echo, Inbound, Item, Preference, Status, split_delivery
from shared.broker.bus import Context, Publish
from shared.crypto.erased import customer_key
from shared.crypto.personal import ErasedData
from shared.directory import Directory
from shared.events.dedup import (
    ChangeReceived,
    EchoReceived,
    ItemRejected,
    MalformedDeliveryReceived,
    MarketingPreferenceReceived,
    MessageReceived,
    StatusReceived,
    account_stream,
    identity_stream,
    inbox_stream,
    message_stream,
    quarantine_stream,
)
from shared.eventstore import (
    Appended,
    Erased,
    EventRejected,
    EventStore,
    NewEvent,
    StreamWrite,
    event_id_for,
)
from shared.observability import metrics
from shared.schemas import BusinessEcho, CustomerMessage, StatusUpdate, WebhookDelivery

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
log = logging.getLogger("dedup")
PIECE = 200  # items per statement
KNOWN_STATUSES = {"sent", "delivered", "read", "played", "failed", "deleted", "warning"}


@dataclass
class Deps:
    store: EventStore
    directory: Directory
    identities: Identities


def deps_for(store: EventStore, directory: Directory, epochs: Epochs = never_erased) -> Deps:
    return Deps(store, directory, Identities(store, epochs=epochs))


async def record_delivery(deps: Deps, delivery: WebhookDelivery, ctx: Context) -> list[Publish]:
    try:
        return await _record_delivery(deps, delivery, ctx)
    except ErasedData:
        # A link this process remembered belongs to an erased customer: learn again from
        # the store, where the erasure left nothing, so the customer gets a new key. A
        # second refusal is work for the erased customer itself: the runtime drops it.
        deps.identities.forget()
        return await _record_delivery(deps, delivery, ctx)


async def _record_delivery(deps: Deps, delivery: WebhookDelivery, ctx: Context) -> list[Publish]:
    store = deps.store
    meta = {**ctx.metadata(), "delivery_id": delivery.delivery_id}
    if not delivery.valid_json:
        event = MalformedDeliveryReceived(
            delivery_id=delivery.delivery_id,
            received_at=delivery.received_at,
            body_base64=delivery.body,
            # jsonb cannot hold U+0000: a NUL in the preview would make the append fail on
            # every attempt and the delivery end in dead letters.
            body_preview=base64.b64decode(delivery.body)[:200]
            .decode("utf-8", "replace")
            .replace("\x00", "\ufffd"),
        )
        await store.append(
            quarantine_stream(delivery.delivery_id),
            [NewEvent(event, event_id_for("malformed", delivery.delivery_id), meta)],
        )
        return []

    payload = _decode(delivery.body)
    if "\\u0000" in delivery.body:  # rare: only then pay for the walk
        payload = _without_nul(payload)
    items = [await _route(item, delivery, deps) for item in split_delivery(payload)]
    writes = [_write_for(item, delivery, meta) for item in items]
    outputs: list[Publish] = []
    # Bounded pieces: one statement per piece (one round trip for a usual delivery, however
    # many items), so that no delivery, however large, makes one statement run out of time.
    for start in range(0, len(items), PIECE):
        piece = list(zip(items[start : start + PIECE], writes[start : start + PIECE], strict=True))
        for index, (item, write, appended) in enumerate(
            await _record_piece(store, piece, delivery, meta), start
        ):
            if appended is None:
                await _reject(store, index, item, delivery, meta, "refused by the event store")
            elif isinstance(item, Inbound):
                if item.business_id:
                    recorded = await _message_recorded(store, item, write, appended)
                    if recorded is not None:
                        outputs.append(recorded)
            elif isinstance(item, Status):
                if item.business_id:
                    outputs.append(_status_recorded(item, appended))
            elif isinstance(item, Echo):
                if item.business_id:
                    outputs.append(_echo_recorded(item, write))
            elif appended.duplicate:
                metrics.dedup_duplicates.labels("change").inc()
    return outputs


async def _record_piece(
    store: EventStore,
    piece: list[tuple[Item, StreamWrite]],
    delivery: WebhookDelivery,
    meta: dict[str, Any],
) -> list[tuple[Item, StreamWrite, Appended | None]]:
    """Record a piece atomically; if the store refuses it, each item on its own, so that
    one item it cannot hold (None) never takes its neighbours with it."""
    try:
        results = await store.append_batch([w for _, w in piece])
        return [(i, w, appended) for (i, w), [appended] in zip(piece, results, strict=True)]
    except EventRejected:
        pass
    out: list[tuple[Item, StreamWrite, Appended | None]] = []
    for item, write in piece:
        try:
            [appended] = await store.append(write.stream, write.events)
        except EventRejected:
            out.append((item, write, None))
        else:
            out.append((item, write, appended))
    return out


async def _reject(
    store: EventStore,
    index: int,
    item: Item,
    delivery: WebhookDelivery,
    meta: dict[str, Any],
    reason: str,
) -> None:
    raw = (
        item.message
        if isinstance(item, Inbound | Echo)
        else item.raw
        if isinstance(item, Status | Preference)
        else item.value
    )
    kind = (
        "message"
        if isinstance(item, Inbound)
        else "echo"
        if isinstance(item, Echo)
        else "status"
        if isinstance(item, Status)
        else "preference"
        if isinstance(item, Preference)
        else "change"
    )
    metrics.dedup_rejected_items.labels(kind).inc()
    log.warning("delivery item rejected", extra={"fields": {"kind": kind, "index": index}})
    event = ItemRejected(
        delivery_id=delivery.delivery_id,
        index=index,
        kind=kind,
        reason=reason,
        item_base64=base64.b64encode(_encode(raw)).decode(),
    )
    key = event_id_for("rejected", delivery.delivery_id, str(index))
    await store.append(quarantine_stream(delivery.delivery_id), [NewEvent(event, key, meta)])


async def _route(item: Item, delivery: WebhookDelivery, deps: Deps) -> Item:
    """Whose item this is: the business owning the number it names (WABA-level changes: the
    WABA's), if the app that signed the delivery owns that number; and, for a customer's
    message, the customer's key. An item nobody owns keeps an empty business: recorded,
    counted, never answered."""
    if isinstance(item, Change):
        return replace(item, business_id=deps.directory.business_of_waba(item.waba_id) or "")
    if isinstance(item, Preference):
        return await _route_preference(item, delivery, deps)
    number = await deps.directory.number(item.phone_number_id)
    reason = ""
    if number is None:
        reason = "unknown_number"
    elif number.app != delivery.app:
        reason = "wrong_app"  # signed by an app that does not own this number
    if number is None or reason:
        metrics.unrouted_items.labels(reason).inc()
        # The number is the business's (Meta's phone number id), never the customer's.
        log.warning(
            "item for a number no business owns here",
            extra={"fields": {"reason": reason, "phone_number_id": item.phone_number_id}},
        )
        # Recorded under a pseudonym all the same (of no business): no name holds the number.
        if isinstance(item, Status):
            return replace(item, customer=customer_key("", item.recipient_id, 0))
        if isinstance(item, Inbound):
            return replace(item, customer=customer_key("", item.customer, 0), address=item.customer)
        return replace(item, customer=customer_key("", item.customer, 0))
    if isinstance(item, Status):
        key = await deps.identities.lookup(number.business_id, item.recipient_id)
        return replace(item, business_id=number.business_id, customer=key)
    # An echo's customer is its recipient: the same key as their own messages have.
    found = await deps.identities.key(number.business_id, item.wa_id, item.user_id)
    if isinstance(item, Echo):
        return replace(item, business_id=number.business_id, customer=found.key)
    return replace(item, business_id=number.business_id, customer=found.key, address=found.address)


async def _route_preference(item: Preference, delivery: WebhookDelivery, deps: Deps) -> Preference:
    """A preference is the WABA's business's (the number's, when the value names one this
    app owns), about the customer of that key: a customer the business never saw gets their
    key here, as their first message would."""
    business = deps.directory.business_of_waba(item.waba_id) or ""
    if item.phone_number_id:
        number = await deps.directory.number(item.phone_number_id)
        if number is not None and number.app == delivery.app:
            business = number.business_id
    if not business:
        metrics.unrouted_items.labels("unknown_waba").inc()
        return item
    found = await deps.identities.key(business, item.wa_id, item.user_id)
    return replace(item, business_id=business, customer=found.key)


def _write_for(item: Item, delivery: WebhookDelivery, meta: dict[str, Any]) -> StreamWrite:
    if isinstance(item, Preference):
        return _preference_write(item, delivery, meta)
    if isinstance(item, Inbound):
        return _message_write(item, delivery, meta)
    if isinstance(item, Status):
        return _status_write(item, delivery, meta)
    if isinstance(item, Echo):
        return _echo_write(item, delivery, meta)
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
    event = MessageReceived(
        conversation_id=item.conversation_id,
        business_id=item.business_id,
        waba_id=item.waba_id,
        phone_number_id=item.phone_number_id,
        display_phone_number=item.display_phone_number,
        customer=item.customer,
        address=item.address,
        wa_id=item.wa_id,
        user_id=item.user_id,
        customer_name=item.customer_name,
        wamid=item.wamid,
        type=item.type,
        timestamp=item.timestamp,
        message=item.message,
        contact=item.contact,
        delivery_id=delivery.delivery_id,
        received_at=delivery.received_at,
    )
    return StreamWrite(
        inbox_stream(item.conversation_id),
        [NewEvent(event, event_id_for("message", item.wamid), meta)],
    )


async def _message_recorded(
    store: EventStore, item: Inbound, write: StreamWrite, appended: Appended
) -> Publish | None:
    event = write.events[0].event
    assert isinstance(event, MessageReceived)
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
        if stored is not None and isinstance(stored.event, Erased):
            # Meta redelivering a message from before its customer's erasure (it retries
            # for days): recognised by its id, kept nowhere, answered never.
            metrics.dedup_duplicates.labels("erased").inc()
            log.info("message of an erased customer dropped")
            return None
        if stored is not None and isinstance(stored.event, MessageReceived):
            event = stored.event
    return Publish(
        "conversation",
        item.conversation_id,
        CustomerMessage(
            conversation_id=item.conversation_id,
            seq=appended.stream_version,
            wamid=item.wamid,
            event=event,
        ),
    )


def _status_write(item: Status, delivery: WebhookDelivery, meta: dict[str, Any]) -> StreamWrite:
    given = item.raw.get("errors")
    errors = given if isinstance(given, list) else []  # anything else stays in `raw` only
    codes = ",".join(str(e.get("code")) for e in errors if isinstance(e, dict))
    event = StatusReceived(
        wamid=item.wamid,
        status=item.status,
        timestamp=item.timestamp,
        recipient_id=item.recipient_id,
        conversation_id=item.conversation_id,
        phone_number_id=item.phone_number_id,
        errors=errors,
        raw=item.raw,
        delivery_id=delivery.delivery_id,
    )
    event_id = event_id_for("status", item.wamid, item.status, item.timestamp, codes)
    return StreamWrite(message_stream(item.wamid), [NewEvent(event, event_id, meta)])


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


def _echo_write(item: Echo, delivery: WebhookDelivery, meta: dict[str, Any]) -> StreamWrite:
    event = EchoReceived(
        conversation_id=item.conversation_id,
        business_id=item.business_id,
        phone_number_id=item.phone_number_id,
        customer=item.customer,
        wa_id=item.wa_id,
        user_id=item.user_id,
        wamid=item.wamid,
        type=item.type,
        timestamp=item.timestamp,
        message=item.message,
        delivery_id=delivery.delivery_id,
    )
    return StreamWrite(
        message_stream(item.wamid), [NewEvent(event, event_id_for("echo", item.wamid), meta)]
    )


def _echo_recorded(item: Echo, write: StreamWrite) -> Publish:
    # Forwarded again on a redelivery (as statuses are): the conversation knows it by wamid.
    event = write.events[0].event
    assert isinstance(event, EchoReceived)
    return Publish(
        "conversation",
        item.conversation_id,
        BusinessEcho(conversation_id=item.conversation_id, wamid=item.wamid, event=event),
    )


def _change_write(item: Change, delivery: WebhookDelivery, meta: dict[str, Any]) -> StreamWrite:
    event = ChangeReceived(
        waba_id=item.waba_id,
        business_id=item.business_id,
        field=item.field,
        value=item.value,
        delivery_id=delivery.delivery_id,
    )
    event_id = event_id_for("change", item.waba_id, item.field, item.fingerprint)
    return StreamWrite(account_stream(item.waba_id), [NewEvent(event, event_id, meta)])


def _preference_write(
    item: Preference, delivery: WebhookDelivery, meta: dict[str, Any]
) -> StreamWrite:
    event = MarketingPreferenceReceived(
        waba_id=item.waba_id,
        business_id=item.business_id,
        phone_number_id=item.phone_number_id,
        customer=item.customer or item.wa_id or item.user_id,
        wa_id=item.wa_id,
        user_id=item.user_id,
        value=item.value,
        category=item.category,
        detail=item.detail,
        timestamp=item.timestamp,
        delivery_id=delivery.delivery_id,
    )
    if not item.business_id:
        # Nobody's WABA: kept with the account's other changes, followed by nobody.
        key = event_id_for(
            "preference", item.waba_id, item.wa_id or item.user_id, item.value, item.timestamp
        )
        return StreamWrite(account_stream(item.waba_id), [NewEvent(event, key, meta)])
    # The customer's own identity stream: personal data, sealed with their key, and erased
    # with them (decision 0011).
    key = event_id_for("preference", item.business_id, event.customer, item.value, item.timestamp)
    return StreamWrite(
        identity_stream(item.business_id, event.customer), [NewEvent(event, key, meta)]
    )
