"""Send replies exactly once where Meta lets us, and fold delivery statuses.

Each send has an outbox stream keyed by its command id: SendStarted before the Graph API
call, then SendSucceeded (with the wamid), SendFailed (permanent) or SendAttemptFailed
(transient, retried). A redelivered command whose outbox is finished does nothing. One whose
last event is SendStarted was interrupted inside the Graph API call by a crash: we cannot
know whether Meta got it, so it is counted, recorded as SendInterrupted, and sent again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from services.outbound.graph import NAMES, GraphClient, PermanentSendError
from services.outbound.lifecycle import fold
from services.outbound.ratelimit import Limiter
from shared.broker.bus import Context, Publish
from shared.directory import Directory, Number
from shared.events.dedup import message_stream
from shared.events.outbound import (
    LifecycleChanged,
    MessageSent,
    SendAttemptFailed,
    SendFailed,
    SendInterrupted,
    SendStarted,
    SendSucceeded,
    outbox_stream,
)
from shared.eventstore import (
    NO_STREAM,
    EventStore,
    NewEvent,
    StoreUnavailable,
    StreamWrite,
    WrongExpectedVersion,
)
from shared.observability import metrics
from shared.schemas import MarkRead, SendMessage, StatusUpdate

log = logging.getLogger("outbound")


@dataclass
class Deps:
    store: EventStore
    graph: GraphClient
    limiter: Limiter
    directory: Directory


async def send_message(cmd: SendMessage, ctx: Context, deps: Deps) -> list[Publish]:
    stream = outbox_stream(cmd.command_id)
    meta = ctx.metadata()
    number = await deps.directory.number(cmd.phone_number_id)
    if number is None:
        # Nobody's number any more (its business removed it): nothing can send from it.
        number = Number(phone_number_id=cmd.phone_number_id, business_id="")
    dry_run = not number.access_token
    try:
        # A first delivery, the common case, costs one write and no read.
        [appended] = await deps.store.append(
            stream, [_send_started(cmd, 1, meta)], expected_version=NO_STREAM
        )
        version, attempt = appended.stream_version, 1
    except WrongExpectedVersion:
        resumed = await _resume(cmd, stream, meta, deps)
        if resumed is None:
            return []
        version, attempt = resumed
    # The budget right before the request, so that what spaces our sends is what Meta sees
    # (a slow write in between would bunch them up), and a redelivery already sent costs none.
    await deps.limiter.acquire(cmd.phone_number_id, number.send_rate_per_second)
    # The read mark that rides along goes beside the request, once its slot has come: not
    # before it (a burst of them would hold back the sends whose slots come first), and
    # without the typing indicator (it could reach Meta after the reply, "typing..." below).
    reading = None
    if cmd.read and attempt == 1 and not dry_run:
        reading = asyncio.ensure_future(_mark_read(number, cmd.read, deps, typing=False))
    try:
        published = await _send(cmd, stream, meta, number, version, attempt, deps)
    except BaseException:
        if reading is not None:
            reading.cancel()
        raise
    if reading is not None:
        await reading
    return published


async def _send(
    cmd: SendMessage,
    stream: str,
    meta: dict[str, Any],
    number: Number,
    version: int,
    attempt: int,
    deps: Deps,
) -> list[Publish]:
    dry_run = not number.access_token
    try:
        if dry_run:
            wamid = f"wamid.DRYRUN.{cmd.command_id}"
        else:
            wamid = await deps.graph.send(number, cmd.to, cmd.payload)
    except PermanentSendError as exc:
        await deps.store.append(
            stream,
            [
                NewEvent(
                    SendFailed(
                        status=exc.status,
                        code=exc.code,
                        title=exc.title,
                        conversation_id=cmd.conversation_id,
                        seq=cmd.seq,
                    ),
                    metadata=meta,
                )
            ],
            expected_version=version,
        )
        metrics.replies_sent.labels("failed", NAMES.get(exc.code or 0, str(exc.code))).inc()
        log.warning("send refused by Meta", extra={"fields": {"code": exc.code}})
        return []
    except Exception as exc:
        # Recorded so that the next attempt knows this one ended cleanly (not a crash).
        await deps.store.append(
            stream,
            [
                NewEvent(
                    SendAttemptFailed(
                        attempt=attempt,
                        error=f"{type(exc).__name__}: {exc}"[:500],
                        conversation_id=cmd.conversation_id,
                    ),
                    metadata=meta,
                )
            ],
            expected_version=version,
        )
        raise
    # With the conversation named, every event of the send is sealed with one key, the
    # conversation's (a key of the outbox stream's own would be made for each send).
    succeeded = NewEvent(
        SendSucceeded(wamid=wamid, conversation_id=cmd.conversation_id), metadata=meta
    )
    sent = NewEvent(
        MessageSent(
            wamid=wamid,
            command_id=cmd.command_id,
            conversation_id=cmd.conversation_id,
            phone_number_id=cmd.phone_number_id,
            seq=cmd.seq,
            payload=cmd.payload,
            dry_run=dry_run,
        ),
        metadata=meta,
    )
    while True:
        try:
            await deps.store.append_batch(
                [
                    StreamWrite(stream, [succeeded], version),
                    StreamWrite(message_stream(wamid), [sent]),
                ]
            )
            break
        except StoreUnavailable as exc:
            # Meta has accepted the message: give up the wamid now and the redelivery would
            # find SendStarted and send it a second time. Wait for the database instead (same
            # event ids, so a commit that did land is recognised).
            log.warning("send not recorded yet: database unavailable; retrying the commit")
            await asyncio.sleep(exc.delay)
    metrics.replies_sent.labels("sent", "").inc()
    log.info(
        "reply sent",
        extra={"fields": {"conversation": cmd.conversation_id, "seq": cmd.seq, "wamid": wamid}},
    )
    if cmd.received_at:
        metrics.reply_latency.observe(max(0.0, time.time() - cmd.received_at))
    return []


def _send_started(cmd: SendMessage, attempt: int, meta: dict[str, Any]) -> NewEvent:
    return NewEvent(
        SendStarted(attempt=attempt, conversation_id=cmd.conversation_id, seq=cmd.seq),
        metadata=meta,
    )


async def _resume(
    cmd: SendMessage, stream: str, meta: dict[str, Any], deps: Deps
) -> tuple[int, int] | None:
    """A redelivered command: nothing to do when its send finished; otherwise start the next
    attempt, recording first that the last one was interrupted when it never ended."""
    history = await deps.store.read_stream(stream)
    if any(isinstance(e.event, SendSucceeded | SendFailed) for e in history):
        return None
    attempt = sum(isinstance(e.event, SendStarted) for e in history) + 1
    events = [_send_started(cmd, attempt, meta)]
    if isinstance(history[-1].event, SendStarted):
        metrics.uncertain_sends.inc()
        log.warning(
            "send interrupted by a crash; sending again",
            extra={"fields": {"command_id": cmd.command_id}},
        )
        interrupted = SendInterrupted(attempt=attempt - 1, conversation_id=cmd.conversation_id)
        events.insert(0, NewEvent(interrupted, metadata=meta))
    appended = await deps.store.append(stream, events, expected_version=history[-1].version)
    return appended[-1].stream_version, attempt


async def mark_read(cmd: MarkRead, ctx: Context, deps: Deps) -> list[Publish]:
    number = await deps.directory.number(cmd.phone_number_id)
    if number is None or not number.access_token:
        return []
    await _mark_read(number, cmd.wamid, deps)
    return []


async def _mark_read(number: Number, wamid: str, deps: Deps, typing: bool = True) -> None:
    try:
        await deps.graph.mark_read(number, wamid, typing=typing)
    except Exception as exc:
        # Cosmetic (blue ticks, typing indicator): logged and counted, never blocks replies.
        metrics.replies_sent.labels("mark_read_failed", "").inc()
        log.warning("mark read failed", extra={"fields": {"error": type(exc).__name__}})


async def track_status(cmd: StatusUpdate, ctx: Context, deps: Deps) -> list[Publish]:
    stream = message_stream(cmd.wamid)
    events = await deps.store.read_stream(stream)
    life = fold([e.event for e in events])
    if not events or not life.advanced:
        return []
    metrics.lifecycle_changes.labels(life.status).inc()
    changed = LifecycleChanged(
        wamid=cmd.wamid,
        status=life.status,
        previous=life.recorded,
        errors=life.errors,
        conversation_id=life.conversation_id or cmd.conversation_id,
    )
    await deps.store.append(
        stream, [NewEvent(changed, metadata=ctx.metadata())], expected_version=events[-1].version
    )
    return []
