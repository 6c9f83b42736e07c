"""The broker topology, declared once from configuration.

Every stage's input is a consistent-hash exchange over N quorum queues with a single active
consumer each, hashed on the conversation key, so one customer's messages stay in one queue.
Failed messages go through a per-stage delay queue back to the stage's exchange; poison
messages end in `dead-letters` with the error in their headers.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from shared.config import Settings
from shared.services import STAGES

DEAD_LETTERS = "dead-letters"


@dataclass(frozen=True)
class Stage:
    """One hop of the pipeline: its exchange, its queues and its retry queue."""

    name: str
    queue_count: int

    @property
    def exchange(self) -> str:
        return self.name

    @property
    def queues(self) -> list[str]:
        return [f"{self.name}.{i}" for i in range(self.queue_count)]

    @property
    def retry_exchange(self) -> str:
        return f"{self.name}.retry"

    @property
    def retry_queue(self) -> str:
        return f"{self.name}.retry"


def stages(settings: Settings) -> dict[str, Stage]:
    """One stage per service that consumes one (shared/services.py)."""
    return {name: Stage(name, settings.queues_of(name)) for name in STAGES}


def quorum(settings: Settings) -> dict[str, object]:
    """A quorum queue's arguments: replicated on QUORUM_GROUP_SIZE nodes of a cluster when
    set (on a single node it is that node whatever the size)."""
    arguments: dict[str, object] = {"x-queue-type": "quorum"}
    if settings.quorum_group_size > 0:
        arguments["x-quorum-initial-group-size"] = settings.quorum_group_size
    return arguments


@dataclass
class DeclaredStage:
    # Strong references: a robust channel can only restore what is still referenced (aio-pika #536).
    exchange: AbstractExchange
    queues: list[AbstractQueue]
    retry_exchange: AbstractExchange
    retry_queue: AbstractQueue


async def declare_stage(
    channel: AbstractChannel, stage: Stage, settings: Settings
) -> DeclaredStage:
    exchange = await channel.declare_exchange(stage.exchange, "x-consistent-hash", durable=True)
    queues = []
    for name in stage.queues:
        queue = await channel.declare_queue(
            name,
            durable=True,
            arguments={
                **quorum(settings),
                "x-single-active-consumer": True,
                # Backstop for messages that crash the process before it can retry them.
                "x-delivery-limit": settings.delivery_limit,
                "x-dead-letter-exchange": DEAD_LETTERS,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        await queue.bind(exchange, routing_key="1")  # consistent-hash: binding key = weight
        queues.append(queue)
    retry_exchange = await channel.declare_exchange(
        stage.retry_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    retry_queue = await channel.declare_queue(
        stage.retry_queue,
        durable=True,
        arguments={
            "x-message-ttl": settings.retry_delay_ms,
            # Expired messages go back to the stage with their routing key, so they rehash
            # to the same conversation queue.
            "x-dead-letter-exchange": stage.exchange,
        },
    )
    await retry_queue.bind(retry_exchange)
    return DeclaredStage(exchange, queues, retry_exchange, retry_queue)


async def declare_dead_letters(
    channel: AbstractChannel, settings: Settings | None = None
) -> tuple[AbstractExchange, AbstractQueue]:
    exchange = await channel.declare_exchange(
        DEAD_LETTERS, aio_pika.ExchangeType.FANOUT, durable=True
    )
    queue = await channel.declare_queue(
        DEAD_LETTERS, durable=True, arguments=quorum(settings or Settings())
    )
    await queue.bind(exchange)
    return exchange, queue


async def declare_all(channel: AbstractChannel, settings: Settings) -> dict[str, DeclaredStage]:
    await declare_dead_letters(channel, settings)
    return {
        name: await declare_stage(channel, st, settings) for name, st in stages(settings).items()
    }
