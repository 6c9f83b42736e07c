"""The api's read models, each a subscription of the shared runner (shared/eventstore/
subscription.py) writing its own tables in the same transaction as its checkpoint:
conversations (with their messages), contacts, templates, campaigns and analytics (first
responses, handoffs). `rebuild` drops
their rows, resets their checkpoints and replays the event store (`python -m ops
rebuild-read-models`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from services.api.projections import analytics, campaigns, contacts, conversations, templates
from shared.eventstore import START, Event, Position
from shared.eventstore.subscription import Batch, CheckpointMoved, Handler, Subscription


@dataclass(frozen=True)
class ReadModel:
    name: str  # the subscription's, and its checkpoint's
    project: Handler
    tables: tuple[str, ...]
    types: tuple[type[Event], ...]  # the events it reads (the rest of the log passes unopened)


READ_MODELS: tuple[ReadModel, ...] = (
    ReadModel(conversations.NAME, conversations.project, conversations.TABLES, conversations.TYPES),
    ReadModel(contacts.NAME, contacts.project, contacts.TABLES, contacts.TYPES),
    ReadModel(templates.NAME, templates.project, templates.TABLES, templates.TYPES),
    ReadModel(campaigns.NAME, campaigns.project, campaigns.TABLES, campaigns.TYPES),
    ReadModel(analytics.NAME, analytics.project, analytics.TABLES, analytics.TYPES),
)
NAMES = tuple(m.name for m in READ_MODELS)


def subscriptions(
    pool: asyncpg.Pool,
    committed: Callable[[str, Position], None] = lambda *_: None,
    poll_interval: float = 0.2,
) -> dict[str, Subscription]:
    """One subscription per read model; `committed(name, position)` is told of each batch
    once it has committed (read-your-writes waits on it in this process)."""

    def handler(model: ReadModel) -> Handler:
        async def handle(batch: Batch) -> None:
            await model.project(batch)
            position = batch.position
            batch.on_commit(lambda: committed(model.name, position))

        return handle

    return {
        # Derived data only: their commits need not wait for the WAL flush (a database
        # crash may cost them their last batches, read again from their checkpoints).
        m.name: Subscription(
            m.name, handler(m), pool, poll_interval=poll_interval, types=m.types, durable=False
        )
        for m in READ_MODELS
    }


async def reset(pool: asyncpg.Pool, names: tuple[str, ...] = NAMES) -> None:
    """Drop the read models' rows and move their checkpoints back to the start, at once. The
    checkpoint is set to START rather than deleted: a batch a running api is committing
    then finds it moved and reads again from the start (the runner's fence), instead of
    committing the position it read from."""
    models = [m for m in READ_MODELS if m.name in names]
    async with pool.acquire() as conn, conn.transaction():
        tables = ", ".join(t for m in models for t in m.tables)
        await conn.execute(f"TRUNCATE {tables}")
        for m in models:
            await conn.execute(
                "INSERT INTO subscription_checkpoints (name, transaction_id, global_position)"
                " VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET"
                " transaction_id = EXCLUDED.transaction_id,"
                " global_position = EXCLUDED.global_position, updated_at = now()",
                m.name,
                START.transaction_id,
                START.global_position,
            )


async def rebuild(pool: asyncpg.Pool, names: tuple[str, ...] = NAMES) -> dict[str, int]:
    """Reset, then replay the whole log into the read models; returns the events each read.
    Safe beside a running api: both step the same checkpoints, and the fence lets each
    batch commit once."""
    await reset(pool, names)
    counts = {}
    for name, subscription in subscriptions(pool).items():
        if name not in names:
            continue
        total = 0
        while True:
            try:
                handled = await subscription.step()
            except CheckpointMoved:
                continue  # a running api committed that batch: read on from there
            if not handled:
                break
            total += handled
        counts[name] = total
    return counts
