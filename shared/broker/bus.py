"""The plumbing every service shares: publish with confirms, consume declaratively.

A service declares handlers per message type (`@service.handles(SendMessage)`); a handler is
a plain async function that commits its effect and returns the messages to publish, or an
async generator that yields them step by step (each batch published before the next step
runs). The runtime publishes with confirms and only then acks: a crash anywhere before the
ack means a redelivery, and handlers are idempotent, so nothing is lost or done twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aio_pika
import aiormq
import msgspec
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from opentelemetry.trace import SpanKind

from shared.broker.cluster import connect_cluster
from shared.broker.topology import (
    DEAD_LETTERS,
    DeclaredStage,
    Stage,
    declare_all,
    declare_dead_letters,
    declare_stage,
    stages,
)
from shared.config import Settings
from shared.crypto.personal import ErasedData
from shared.crypto.transit import NotOurs, opened, transit_for
from shared.errors import PermanentError, RetryLater
from shared.observability import metrics, tracing
from shared.schemas import Message

log = logging.getLogger("bus")
_encode = msgspec.json.Encoder().encode
PUBLISH_TIMEOUT = 5.0
BROKER_RETRY_DELAY = 1.0
MAX_OUTAGE_DELAY = 30.0
# A publish that fails like this failed because of the broker (restarting, connection or
# channel lost, no confirm, queue full), not because of the message.
_BROKER_FAILURES = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    TimeoutError,
)


MAX_ROUTING_KEY = 255  # AMQP's limit, in bytes


def bounded_key(key: str) -> str:
    """A routing key AMQP accepts: the key itself, or, past the limit, a digest of it (the
    same key always gives the same digest, so the consistent hash keeps its queue)."""
    if len(key.encode()) <= MAX_ROUTING_KEY:
        return key
    return "sha256." + hashlib.sha256(key.encode()).hexdigest()


class BrokerUnavailable(RetryLater):
    """A publish did not get through. A consumer holds the key's lane and runs the handler
    again (it is idempotent) instead of moving on: the key's next message must not publish
    its outputs before this one's, or a customer could get reply 4 before reply 3."""


@dataclass(frozen=True)
class Publish:
    """An output of a handler: `message` to `stage`, routed by `key`."""

    stage: str
    key: str
    message: Message


@dataclass(frozen=True)
class Context:
    """What a handler knows about the message it is handling."""

    message_id: str
    correlation_id: str
    attempt: int
    routing_key: str
    headers: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """Event metadata: correlation and causation ids link events to what caused them, and
        the W3C trace context ties them to the customer message's trace."""
        meta = {"correlation_id": self.correlation_id, "causation_id": self.message_id}
        traceparent = tracing.current_traceparent() or self.headers.get("traceparent")
        if traceparent:
            meta["traceparent"] = str(traceparent)
        return meta


M = TypeVar("M", bound=Message)
Q = TypeVar("Q")
Outputs = Awaitable[list[Publish]] | AsyncIterator[list[Publish]]
Handler = Callable[[Any, Context], Outputs]
# Called before a message goes to the dead letters; returns what to publish first.
DeadLetterHook = Callable[[Any, Context, str], Awaitable[list[Publish]]]


async def batches(result: Outputs) -> AsyncIterator[list[Publish]]:
    """A handler's outputs, batch by batch, whichever form it returns them in."""
    if isinstance(result, AsyncIterator):
        async with contextlib.aclosing(result):
            async for batch in result:
                yield batch
    else:
        yield await result


async def collect(result: Outputs) -> list[Publish]:
    """Every output of a handler (tests, and callers that publish at the end)."""
    return [p async for batch in batches(result) for p in batch]


class Bus:
    """One robust connection; a confirm channel for publishing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._stages: dict[str, DeclaredStage] = {}
        self._dead_letters: Any = None
        # Bodies sealed on the broker with a MASTER_KEY (shared/crypto/transit.py).
        self.transit = transit_for(settings.master_key)

    async def connect(self) -> None:
        # Any node of AMQP_URL that answers; the next one in turn when its node dies.
        self.connection = await connect_cluster(
            self.settings.amqp_url, client_properties={"connection_name": "whatsapp-bot"}
        )
        self._channel = await self.connection.channel(publisher_confirms=True)  # type: ignore[assignment]
        self._stages = await declare_all(self._channel, self.settings)
        self._dead_letters = await self._channel.get_exchange(DEAD_LETTERS)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    @property
    def ready(self) -> bool:
        return (
            self.connection is not None
            and not self.connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def publish(
        self,
        stage: str,
        key: str,
        message: Message,
        ctx: Context | None = None,
        headers: dict[str, Any] | None = None,
        confirm_within: float = PUBLISH_TIMEOUT,
    ) -> None:
        """Publish and wait for the broker's confirm, at most `confirm_within` seconds
        (aio-pika #636: an unbounded wait can hang)."""
        exchange = self._stages[stage].exchange
        await self._publish_to(exchange, key, message, ctx, headers, confirm_within)

    async def publish_raw(
        self,
        exchange: Any,
        key: str,
        body: bytes,
        type_: str | None,
        headers: dict[str, Any],
        correlation_id: str | None,
        message_id: str | None = None,
        confirm_within: float = PUBLISH_TIMEOUT,
    ) -> None:
        with tracing.span(
            f"{exchange.name} publish",
            SpanKind.PRODUCER,
            **{
                "messaging.system": "rabbitmq",
                "messaging.destination.name": exchange.name,
                "messaging.message.type": type_ or "",
            },
        ) as current:
            # The consumer continues this span's trace; x-published-at measures its lag.
            headers = tracing.inject({**headers, "x-published-at": time.time()})
            msg = aio_pika.Message(
                body,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                type=type_,
                message_id=message_id or uuid.uuid4().hex,
                correlation_id=correlation_id,
                headers=headers,
                timestamp=time.time(),
            )
            try:
                await exchange.publish(msg, routing_key=bounded_key(key), timeout=confirm_within)
            except _BROKER_FAILURES as exc:
                tracing.record_error(current, exc)
                raise BrokerUnavailable(
                    f"publish failed: {type(exc).__name__}: {exc}", BROKER_RETRY_DELAY
                ) from exc

    async def _publish_to(
        self,
        exchange: Any,
        key: str,
        message: Message,
        ctx: Context | None,
        headers: dict[str, Any] | None,
        confirm_within: float = PUBLISH_TIMEOUT,
    ) -> None:
        hdrs = dict(headers or {})
        if ctx is not None:
            hdrs.setdefault("x-causation-id", ctx.message_id)
        body = _encode(message)
        await self.publish_raw(
            exchange,
            key,
            self.transit.seal(body) if self.transit is not None else body,
            type(message).__struct_config__.tag,  # type: ignore[arg-type]
            hdrs,
            ctx.correlation_id if ctx else hdrs.get("x-correlation-id"),
            confirm_within=confirm_within,
        )

    async def publish_all(self, outputs: list[Publish], ctx: Context | None) -> None:
        # Many in flight at once: awaiting confirms one by one tops out at a few hundred/s.
        await asyncio.gather(*(self.publish(p.stage, p.key, p.message, ctx) for p in outputs))


class KeyedLanes:
    """Run jobs concurrently across keys and strictly one after another within a key."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Task[None]] = {}

    def submit(self, key: str, job: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        previous = self._tails.get(key)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            await job()

        task = asyncio.create_task(run())
        self._tails[key] = task

        def forget(t: asyncio.Task[None]) -> None:
            if self._tails.get(key) is t:
                del self._tails[key]

        task.add_done_callback(forget)
        return task

    async def drain(self) -> None:
        while self._tails:
            await asyncio.wait(list(self._tails.values()))

    def __len__(self) -> int:
        return len(self._tails)


@dataclass
class _Route:
    handler: Handler
    on_dead_letter: DeadLetterHook | None


class Service:
    """A service's declaration: its stage and a handler per message type it consumes.
    `prefetch` (deliveries in flight per queue) overrides the PREFETCH setting."""

    def __init__(self, name: str, prefetch: int | None = None) -> None:
        self.name = name
        self.prefetch = prefetch
        self._routes: dict[type[Message], _Route] = {}
        self._decoder: msgspec.json.Decoder[Any] | None = None

    def handles(
        self, schema: type[M], on_dead_letter: DeadLetterHook | None = None
    ) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self._routes[schema] = _Route(fn, on_dead_letter)
            self._decoder = None
            return fn

        return register

    def decode(self, body: bytes) -> Message:
        if self._decoder is None:
            types = tuple(self._routes)
            union = types[0] if len(types) == 1 else _union(types)
            self._decoder = msgspec.json.Decoder(union)
        return self._decoder.decode(body)

    def route(self, message: Message) -> _Route:
        return self._routes[type(message)]


def instance_of(service: str, settings: Settings) -> tuple[int, int]:
    """(this process's instance number, the instance count) of a service: the stack names
    instance k `<service>-k` in SERVICE_INSTANCE and runs SCALE_<SERVICE> of them."""
    count = max(1, settings.scale.get(service, 1))
    instance = settings.extra.get("SERVICE_INSTANCE", "") or os.environ.get("SERVICE_INSTANCE", "")
    _, _, suffix = instance.rpartition("-")
    index = int(suffix) if instance.startswith(f"{service}-") and suffix.isdigit() else 1
    return index, count


def share_of(queues: list[Q], index: int, count: int) -> tuple[list[Q], list[Q]]:
    """Instance `index` of `count`: its own queues (every count-th, from its number) and the
    others, which it stands by for."""
    own = [q for i, q in enumerate(queues) if i % count == (index - 1) % count]
    return own, [q for q in queues if q not in own]


def _union(types: tuple[type, ...]) -> Any:
    union: Any = types[0]
    for t in types[1:]:
        union = union | t
    return union


class Consumer:
    """Consumes a stage's queues and runs a Service's handlers with the crash-safety rules."""

    def __init__(self, bus: Bus, service: Service, settings: Settings) -> None:
        self.bus = bus
        self.service = service
        self.settings = settings
        self.stage: Stage = stages(settings)[service.name]
        self.lanes = KeyedLanes()
        self._channel: AbstractRobustChannel | None = None
        self._queues: list[Any] = []
        self._consuming: list[tuple[Any, str]] = []  # (queue, consumer tag)
        self._standby: asyncio.Task[None] | None = None
        self._watched: list[Any] = []
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop = asyncio.Event()

    async def start(self) -> None:
        assert self.bus.connection is not None
        self._channel = await self.bus.connection.channel()  # type: ignore[assignment]
        await self._channel.set_qos(prefetch_count=self.service.prefetch or self.settings.prefetch)
        declared = await declare_stage(self._channel, self.stage, self.settings)
        _, dead_letters = await declare_dead_letters(self._channel, self.settings)
        self._queues = declared.queues  # strong references for the robust channel
        self._watched = [*declared.queues, declared.retry_queue, dead_letters]
        # With several instances, each subscribes first to its own share of the queues and
        # to the rest a moment later: a queue's single active consumer is the first to
        # subscribe, so the shares spread the work and the later subscriptions are the
        # standbys that take a queue over when its active instance dies.
        own, standby = share_of(self._queues, *instance_of(self.service.name, self.settings))
        self._consuming = []
        for queue in own:
            await self._consume(queue)
        if standby:
            self._standby = asyncio.create_task(self._consume_later(standby))
        self._poller = asyncio.create_task(self._poll_depths())

    async def _consume(self, queue: Any) -> None:
        tag = await queue.consume(functools.partial(self._on_message, queue.name))
        self._consuming.append((queue, tag))

    async def _consume_later(self, queues: list[Any]) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), self.settings.standby_delay_seconds)
        for queue in queues:
            if self._stopping:
                return
            await self._consume(queue)

    async def _poll_depths(self, every: float = 5.0) -> None:
        """Queue depth and consumers for the dashboard (and the dead-letter alert)."""
        while not self._stopping:
            for queue in self._watched:
                try:
                    result = await queue.declare()
                except Exception:
                    break  # broker away: try again next round
                metrics.queue_messages.labels(queue.name).set(result.message_count or 0)
                metrics.queue_consumers.labels(queue.name).set(result.consumer_count or 0)
            await asyncio.sleep(every)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking messages, let in-flight ones finish (bounded), then close. Whatever
        is still unacked after the grace period is redelivered to the next consumer."""
        self._stopping = True
        self._stop.set()
        for task in (self._poller, self._standby):
            if task is not None:
                task.cancel()
        for queue, tag in self._consuming:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.lanes.drain(), grace)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _on_message(self, queue: str, message: AbstractIncomingMessage) -> None:
        self.lanes.submit(message.routing_key or "", lambda: self._traced(queue, message))

    async def _traced(self, queue: str, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        published = headers.get("x-published-at")
        if isinstance(published, int | float):
            metrics.consumer_lag.labels(queue).observe(max(0.0, time.time() - published))
        # One trace per customer message: continue the producer's span across the broker.
        with (
            tracing.continue_trace(headers),
            tracing.span(
                f"{queue.rsplit('.', 1)[0]} process",
                SpanKind.CONSUMER,
                **{
                    "messaging.system": "rabbitmq",
                    "messaging.destination.name": queue,
                    "messaging.message.type": message.type or "",
                },
            ),
        ):
            await self._process(message)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        ctx = Context(
            message_id=message.message_id or uuid.uuid4().hex,
            correlation_id=message.correlation_id or message.message_id or "",
            attempt=int(headers.get("x-attempt", 0) or 0),
            routing_key=message.routing_key or "",
            headers=headers,
        )
        kind = message.type or "unknown"
        started = time.perf_counter()
        try:
            decoded = self.service.decode(opened(self.bus.transit, message.body))
        except (msgspec.DecodeError, msgspec.ValidationError, KeyError, NotOurs) as exc:
            await self._dead_letter(message, ctx, None, f"undecodable: {exc}")
            return
        route = self.service.route(decoded)
        waited = 0
        outage_started = 0.0
        while True:
            try:
                async for outputs in batches(route.handler(decoded, ctx)):
                    await self.bus.publish_all(outputs, ctx)
            except RetryLater as exc:
                # An outage (broker, database, an upstream throttling or broken): nothing
                # wrong with the message, so its attempts are not spent. It waits in its
                # lane, with a growing but bounded delay, unless a stop is requested: then
                # it is left unacked for the broker to give to the next consumer.
                if waited == 0:
                    outage_started = time.monotonic()
                    metrics.waiting_now.labels(self.service.name).inc()
                waited += 1
                metrics.retries.labels(self.service.name, "later").inc()
                log.warning("retry later", extra={"fields": {"type": kind, "reason": str(exc)}})
                delay = min(MAX_OUTAGE_DELAY, exc.delay * 2 ** min(waited - 1, 6))
                if await self._stop_requested(delay):
                    self._outage_over(outage_started)
                    return
                continue
            except ErasedData:
                # Work for a customer erased meanwhile: dropped, never dead-lettered (a dead
                # letter would keep what the erasure destroyed).
                await self._ack(message)
                outcome = "erased"
            except PermanentError as exc:
                await self._dead_letter(message, ctx, decoded, f"permanent: {exc}", route)
                outcome = "dead_lettered"
            except Exception as exc:
                if ctx.attempt + 1 < self.settings.max_attempts:
                    # A counted attempt, tried again in its lane after RETRY_DELAY_MS: off
                    # its lane, the key's next message would overtake it (at dedup, a
                    # customer's messages would be recorded, and answered, out of order).
                    ctx = self._next_attempt(message, ctx, exc)
                    if await self._stop_requested(self.settings.retry_delay_ms / 1000):
                        # Left unacked for the next consumer (its count starts again there;
                        # the quorum queue's delivery limit bounds a message that never ends).
                        return
                    continue
                outcome = await self._failed(message, ctx, decoded, exc, route)
            else:
                await self._ack(message)
                outcome = "ok"
            break
        if waited:
            self._outage_over(outage_started)
        metrics.events_processed.labels(self.service.name, kind, outcome).inc()
        metrics.handler_duration.labels(self.service.name, kind).observe(
            time.perf_counter() - started
        )

    async def _stop_requested(self, delay: float) -> bool:
        """Wait `delay` seconds, or less if a stop is requested; True when it was."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)
        return self._stop.is_set()

    def _next_attempt(
        self, message: AbstractIncomingMessage, ctx: Context, exc: Exception
    ) -> Context:
        error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "handler failed, will retry",
            extra={"fields": {"type": message.type, "attempt": ctx.attempt + 1, "error": error}},
        )
        metrics.retries.labels(self.service.name, "scheduled").inc()
        headers = {**ctx.headers, "x-attempt": ctx.attempt + 1, "x-last-error": error[:500]}
        return dataclasses.replace(ctx, attempt=ctx.attempt + 1, headers=headers)

    def _outage_over(self, started: float) -> None:
        metrics.waiting_now.labels(self.service.name).dec()
        metrics.outage_wait.labels(self.service.name).observe(time.monotonic() - started)

    async def _failed(
        self,
        message: AbstractIncomingMessage,
        ctx: Context,
        decoded: Message,
        exc: Exception,
        route: _Route,
    ) -> str:
        """Its attempts spent (each retried in its lane): to the dead letters."""
        await self._dead_letter(message, ctx, decoded, f"{type(exc).__name__}: {exc}", route)
        return "dead_lettered"

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        ctx: Context,
        decoded: Message | None,
        error: str,
        route: _Route | None = None,
    ) -> None:
        log.error(
            "dead-lettering message", extra={"fields": {"type": message.type, "error": error}}
        )
        try:
            if route is not None and route.on_dead_letter is not None and decoded is not None:
                await self.bus.publish_all(await route.on_dead_letter(decoded, ctx, error), ctx)
            headers = {
                **ctx.headers,
                "x-error": error[:1000],
                "x-stage": self.service.name,
                "x-routing-key": ctx.routing_key,
                "x-attempts": ctx.attempt + 1,
            }
            await self.bus.publish_raw(
                self.bus._dead_letters,
                ctx.routing_key,
                message.body,
                message.type,
                headers,
                message.correlation_id,
                message.message_id,
            )
        except Exception:
            log.exception("could not dead-letter; requeueing")
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        metrics.dead_letters.labels(self.service.name).inc()
        await self._ack(message)

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except Exception as exc:
            # Delivery tags die with their channel (aio-pika pitfall): after a reconnect the
            # broker redelivers, and the idempotent handler makes that harmless.
            log.warning("ack lost; broker will redeliver", extra={"fields": {"error": str(exc)}})
