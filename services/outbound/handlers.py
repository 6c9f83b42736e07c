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
from services.outbound.ratelimit import RateLimiter
from shared.broker.bus import Context, Publish
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

DONE = {"SendSucceeded", "SendFailed"}


@dataclass
class Deps:
    store: EventStore
    graph: GraphClient | None  # None: dry run, no access token configured
    limiter: RateLimiter


def outbox_stream(command_id: str) -> str:
    return f"outbox-{command_id}"


def message_stream(wamid: str) -> str:
    return f"message-{wamid}"


async def send_message(cmd: SendMessage, ctx: Context, deps: Deps) -> list[Publish]:
    stream = outbox_stream(cmd.command_id)
    meta = ctx.metadata()
    await deps.limiter.acquire(cmd.phone_number_id)
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
    try:
        if deps.graph is None:
            wamid = f"wamid.DRYRUN.{cmd.command_id}"
        else:
            wamid = await deps.graph.send(cmd.phone_number_id, cmd.to, cmd.payload)
    except PermanentSendError as exc:
        await deps.store.append(
            stream,
            [
                NewEvent(
                    "SendFailed",
                    {
                        "status": exc.status,
                        "code": exc.code,
                        "title": exc.title,
                        "conversation_id": cmd.conversation_id,
                        "seq": cmd.seq,
                    },
                    meta,
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
                    "SendAttemptFailed",
                    {
                        "attempt": attempt,
                        "error": f"{type(exc).__name__}: {exc}"[:500],
                    },
                    meta,
                )
            ],
            expected_version=version,
        )
        raise
    succeeded = NewEvent("SendSucceeded", {"wamid": wamid}, meta)
    sent = NewEvent(
        "MessageSent",
        {
            "wamid": wamid,
            "command_id": cmd.command_id,
            "conversation_id": cmd.conversation_id,
            "phone_number_id": cmd.phone_number_id,
            "seq": cmd.seq,
            "payload": cmd.payload,
            "dry_run": deps.graph is None,
        },
        meta,
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
        "SendStarted",
        {"attempt": attempt, "conversation_id": cmd.conversation_id, "seq": cmd.seq},
        meta,
    )


async def _resume(
    cmd: SendMessage, stream: str, meta: dict[str, Any], deps: Deps
) -> tuple[int, int] | None:
    """A redelivered command: nothing to do when its send finished; otherwise start the next
    attempt, recording first that the last one was interrupted when it never ended."""
    history = await deps.store.read_stream(stream)
    types = [e.type for e in history]
    if DONE.intersection(types):
        return None
    attempt = types.count("SendStarted") + 1
    events = [_send_started(cmd, attempt, meta)]
    if types[-1] == "SendStarted":
        metrics.uncertain_sends.inc()
        log.warning(
            "send interrupted by a crash; sending again",
            extra={"fields": {"command_id": cmd.command_id}},
        )
        events.insert(0, NewEvent("SendInterrupted", {"attempt": attempt - 1}, meta))
    appended = await deps.store.append(stream, events, expected_version=history[-1].version)
    return appended[-1].stream_version, attempt


async def mark_read(cmd: MarkRead, ctx: Context, deps: Deps) -> list[Publish]:
    if deps.graph is None:
        return []
    try:
        await deps.graph.mark_read(cmd.phone_number_id, cmd.wamid)
    except Exception as exc:
        # Cosmetic (blue ticks, typing indicator): logged and counted, never blocks replies.
        metrics.replies_sent.labels("mark_read_failed", "").inc()
        log.warning("mark read failed", extra={"fields": {"error": type(exc).__name__}})
    return []


async def track_status(cmd: StatusUpdate, ctx: Context, deps: Deps) -> list[Publish]:
    stream = message_stream(cmd.wamid)
    events = await deps.store.read_stream(stream)
    life = fold(events)
    if not events or not life.advanced:
        return []
    metrics.lifecycle_changes.labels(life.status).inc()
    await deps.store.append(
        stream,
        [
            NewEvent(
                "LifecycleChanged",
                {
                    "wamid": cmd.wamid,
                    "status": life.status,
                    "previous": life.recorded,
                    "errors": life.errors,
                    "conversation_id": life.conversation_id or cmd.conversation_id,
                },
                ctx.metadata(),
            )
        ],
        expected_version=events[-1].version,
    )
    return []
