"""PostgreSQL adapter of the relay: endpoints, deliveries, and a view of its checkpoint.

Endpoint changes append to the event store and update the `webhook_endpoints` projection in
one transaction. The fan-out inserts a batch of deliveries inside the subscription runner's
transaction, which also moves the checkpoint (`subscription_checkpoints`, name
`webhook-relay`), so a crash either keeps both or neither; delivery ids are deterministic, so
a batch read again after a crash inserts nothing twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.webhook_relay.domain import Endpoint, Secret
from shared.events.webhook_relay import endpoint_stream
from shared.eventstore import NewEvent, Position
from shared.eventstore.postgres import PostgresEventStore
from shared.eventstore.subscription import checkpoint

DELIVERY_NAMESPACE = uuid.UUID("8f0c5a1e-7d3b-4b8e-9a63-2f1e4c7d9b05")
SUBSCRIPTION = "webhook-relay"  # the subscription's name: its checkpoint and its lock


def delivery_id_for(endpoint_id: str, event_id: str) -> str:
    """The webhook-id: one per (endpoint, event), the same on every retry and replay."""
    return "msg_" + uuid.uuid5(DELIVERY_NAMESPACE, f"{endpoint_id}:{event_id}").hex


@dataclass(frozen=True)
class NewDelivery:
    delivery_id: str
    endpoint_id: str
    event_id: uuid.UUID
    event_type: str
    order_key: str
    position: Position
    event_time: datetime
    body: str


@dataclass(frozen=True)
class Head:
    """The delivery at the front of one lane (endpoint x order key)."""

    delivery_id: str
    endpoint_id: str
    order_key: str
    due: datetime
    ordinal: tuple[int, int]


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    endpoint_id: str
    event_id: uuid.UUID
    event_type: str
    order_key: str
    body: str
    state: str
    attempts: int
    failures: int
    next_attempt_at: datetime
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    replays: int
    created_at: datetime
    finished_at: datetime | None
    event_time: datetime

    def public(self, with_body: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.delivery_id,
            "endpoint_id": self.endpoint_id,
            "event_id": str(self.event_id),
            "event_type": self.event_type,
            "conversation": self.order_key,
            "state": self.state,
            "attempts": self.attempts,
            "failures": self.failures,
            "next_attempt_at": _iso(self.next_attempt_at) if self.state == "pending" else None,
            "first_attempt_at": _iso(self.first_attempt_at),
            "last_attempt_at": _iso(self.last_attempt_at),
            "last_status": self.last_status,
            "last_error": self.last_error,
            "replays": self.replays,
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at),
            "event_time": _iso(self.event_time),
        }
        if with_body:
            out["body"] = self.body
        return out


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _head(row: asyncpg.Record) -> Head:
    return Head(
        row["delivery_id"],
        row["endpoint_id"],
        row["order_key"],
        row["next_attempt_at"],
        (row["event_txid"], row["event_position"]),
    )


# The endpoints of business $n, deleted ones included (their deliveries stay its own).
_OF_BUSINESS = "(SELECT endpoint_id FROM webhook_endpoints WHERE business_id = ${n})"
_DELIVERY_COLUMNS = (
    "delivery_id, endpoint_id, event_id, event_type, order_key, body, state, attempts, failures,"
    " next_attempt_at, first_attempt_at, last_attempt_at, last_status, last_error, replays,"
    " created_at, finished_at, event_time"
)
_HEAD_COLUMNS = "delivery_id, endpoint_id, order_key, next_attempt_at, event_txid, event_position"


def _delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(**dict(row))


def _endpoint(row: asyncpg.Record) -> Endpoint:
    secrets = tuple(
        Secret(
            s["secret"],
            datetime.fromisoformat(s["created_at"]),
            datetime.fromisoformat(s["expires_at"]) if s.get("expires_at") else None,
        )
        for s in row["secrets"]
    )
    return Endpoint(
        endpoint_id=row["endpoint_id"],
        url=row["url"],
        description=row["description"],
        event_types=tuple(row["event_types"]),
        enabled=row["enabled"],
        disabled_reason=row["disabled_reason"],
        secrets=secrets,
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deleted=row["deleted"],
        business_id=row["business_id"],
    )


def _secrets_json(endpoint: Endpoint) -> list[dict[str, Any]]:
    return [
        {
            "secret": s.secret,
            "created_at": s.created_at.isoformat(),
            "expires_at": s.expires_at.isoformat() if s.expires_at else None,
        }
        for s in endpoint.secrets
    ]


_INSERT_DELIVERIES = """
INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_id, event_type, order_key,
    event_txid, event_position, event_time, body, next_attempt_at)
SELECT d, e, i, t, k, x, p, et, b, $10
  FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::bigint[],
              $7::bigint[], $8::timestamptz[], $9::text[]) AS u(d, e, i, t, k, x, p, et, b)
"""


def _delivery_arrays(rows: list[NewDelivery]) -> list[Any]:
    return [
        [r.delivery_id for r in rows],
        [r.endpoint_id for r in rows],
        [r.event_id for r in rows],
        [r.event_type for r in rows],
        [r.order_key for r in rows],
        [r.position.transaction_id for r in rows],
        [r.position.global_position for r in rows],
        [r.event_time for r in rows],
        [r.body for r in rows],
    ]


class RelayStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- endpoints ------------------------------------------------------------------------

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM webhook_endpoints WHERE endpoint_id = $1 AND NOT deleted", endpoint_id
        )
        return _endpoint(row) if row else None

    async def list_endpoints(
        self,
        enabled_only: bool = False,
        conn: asyncpg.Connection | None = None,
        business_id: str | None = None,
    ) -> list[Endpoint]:
        """Every endpoint, or a business's (`business_id`)."""
        args = [] if business_id is None else [business_id]
        rows = await (conn or self.pool).fetch(
            "SELECT * FROM webhook_endpoints WHERE NOT deleted"
            + (" AND enabled" if enabled_only else "")
            + (" AND business_id = $1" if business_id is not None else "")
            + " ORDER BY created_at, endpoint_id",
            *args,
        )
        return [_endpoint(r) for r in rows]

    async def save_endpoint(
        self, endpoint: Endpoint, events: list[NewEvent], expected_version: int
    ) -> Endpoint:
        """Append the events (optimistic concurrency on the stream) and write the projection,
        atomically. Raises WrongExpectedVersion when someone else changed it first."""
        if not events:
            return endpoint
        async with self.pool.acquire() as conn, conn.transaction():
            appended = await PostgresEventStore(conn=conn).append(
                endpoint_stream(endpoint.endpoint_id), events, expected_version
            )
            version = appended[-1].stream_version
            await conn.execute(
                """
                INSERT INTO webhook_endpoints (endpoint_id, url, description, event_types,
                    enabled, disabled_reason, secrets, version, created_at, updated_at, deleted,
                    business_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                ON CONFLICT (endpoint_id) DO UPDATE SET url = $2, description = $3,
                    event_types = $4, enabled = $5, disabled_reason = $6, secrets = $7,
                    version = $8, updated_at = $10, deleted = $11
                """,
                endpoint.endpoint_id,
                endpoint.url,
                endpoint.description,
                list(endpoint.event_types),
                endpoint.enabled,
                endpoint.disabled_reason,
                _secrets_json(endpoint),
                version,
                endpoint.created_at,
                endpoint.updated_at,
                endpoint.deleted,
                endpoint.business_id,  # set at creation, never changed
            )
            if endpoint.deleted:
                # Nothing more will be sent there; the rows stay for the record.
                await conn.execute(
                    "UPDATE webhook_deliveries SET state = 'cancelled', finished_at = now()"
                    " WHERE endpoint_id = $1 AND state = 'pending'",
                    endpoint.endpoint_id,
                )
        return replace(endpoint, version=version)

    async def record_events(self, endpoint_id: str, events: list[NewEvent]) -> None:
        """Events about an endpoint that change nothing in its configuration (replays)."""
        async with self.pool.acquire() as conn, conn.transaction():
            appended = await PostgresEventStore(conn=conn).append(
                endpoint_stream(endpoint_id), events
            )
            await conn.execute(
                "UPDATE webhook_endpoints SET version = greatest(version, $2)"
                " WHERE endpoint_id = $1",
                endpoint_id,
                appended[-1].stream_version,
            )

    # --- subscription ---------------------------------------------------------------------

    async def checkpoint(self, name: str = SUBSCRIPTION) -> Position:
        """Where the relay's subscription has got to (replay-since stops there)."""
        return await checkpoint(self.pool, name)

    async def enqueue(
        self, conn: asyncpg.Connection, rows: list[NewDelivery], now: datetime
    ) -> list[Head]:
        """Insert deliveries on `conn`, inside the subscription's batch transaction. Returns
        the deliveries that are new (a batch read again returns none)."""
        if not rows:
            return []
        inserted = await conn.fetch(
            _INSERT_DELIVERIES + " ON CONFLICT (delivery_id) DO NOTHING RETURNING " + _HEAD_COLUMNS,
            *_delivery_arrays(rows),
            now,
        )
        return [_head(r) for r in inserted]

    async def position_at(self, since: datetime) -> Position | None:
        """A read_all position just before the first event recorded at or after `since`."""
        row = await self.pool.fetchrow(
            "SELECT transaction_id::text AS txid FROM events WHERE recorded_at >= $1"
            " ORDER BY transaction_id LIMIT 1",
            since,
        )
        return Position(int(row["txid"]), 0) if row else None

    # --- deliveries -----------------------------------------------------------------------

    async def delivery(self, delivery_id: str, business_id: str | None = None) -> Delivery | None:
        """The delivery; with `business_id`, only if it went to one of that business's
        endpoints (deleted ones too)."""
        args: list[Any] = [delivery_id]
        scoped = ""
        if business_id is not None:
            args.append(business_id)
            scoped = " AND endpoint_id IN " + _OF_BUSINESS.format(n=2)
        row = await self.pool.fetchrow(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE delivery_id = $1{scoped}",
            *args,
        )
        return _delivery(row) if row else None

    async def record_attempt(
        self,
        delivery_id: str,
        state: str,
        failures: int,
        next_attempt_at: datetime,
        attempted_at: datetime,
        status: int | None,
        error: str | None,
    ) -> bool:
        result = await self.pool.execute(
            """
            UPDATE webhook_deliveries SET state = $2, attempts = attempts + 1, failures = $3,
                next_attempt_at = $4, first_attempt_at = coalesce(first_attempt_at, $5),
                last_attempt_at = $5, last_status = $6, last_error = $7,
                finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE $5 END
             WHERE delivery_id = $1 AND state = 'pending'
            """,
            delivery_id,
            state,
            failures,
            next_attempt_at,
            attempted_at,
            status,
            error,
        )
        return result.endswith(" 1")

    async def lane_head(self, endpoint_id: str, order_key: str) -> Head | None:
        row = await self.pool.fetchrow(
            f"SELECT {_HEAD_COLUMNS} FROM webhook_deliveries"
            " WHERE endpoint_id = $1 AND order_key = $2 AND state = 'pending'"
            " ORDER BY event_txid, event_position LIMIT 1",
            endpoint_id,
            order_key,
        )
        return _head(row) if row else None

    async def lane_heads(self, endpoint_id: str) -> list[Head]:
        """The head of every lane of an endpoint. A loose index scan: one index probe per lane,
        however long the backlog behind each head is."""
        rows = await self.pool.fetch(
            f"""
            WITH RECURSIVE lanes(order_key) AS (
                (SELECT order_key FROM webhook_deliveries
                  WHERE endpoint_id = $1 AND state = 'pending' ORDER BY order_key LIMIT 1)
                UNION ALL
                SELECT (SELECT d.order_key FROM webhook_deliveries d
                         WHERE d.endpoint_id = $1 AND d.state = 'pending'
                           AND d.order_key > lanes.order_key
                         ORDER BY d.order_key LIMIT 1)
                  FROM lanes WHERE lanes.order_key IS NOT NULL
            )
            SELECT h.* FROM lanes CROSS JOIN LATERAL (
                SELECT {_HEAD_COLUMNS} FROM webhook_deliveries d
                 WHERE d.endpoint_id = $1 AND d.state = 'pending'
                   AND d.order_key = lanes.order_key
                 ORDER BY d.event_txid, d.event_position LIMIT 1) h
            WHERE lanes.order_key IS NOT NULL
            """,
            endpoint_id,
        )
        return [_head(r) for r in rows]

    async def pull_forward(self, endpoint_id: str, now: datetime) -> int:
        """The endpoint has recovered: what waits for a later retry goes now."""
        result = await self.pool.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = $2"
            " WHERE endpoint_id = $1 AND state = 'pending' AND next_attempt_at > $2",
            endpoint_id,
            now,
        )
        return int(result.split()[-1])

    async def list_deliveries(
        self,
        endpoint_id: str | None,
        state: str | None,
        limit: int,
        before: datetime | None = None,
        business_id: str | None = None,
        before_id: str | None = None,
    ) -> list[Delivery]:
        """Newest first. `before` (and `before_id`): the page after the row created at
        `before` (with that id); `business_id`: only its endpoints' deliveries."""
        clauses: list[str] = []
        args: list[Any] = []
        if endpoint_id is not None:
            args.append(endpoint_id)
            clauses.append(f"endpoint_id = ${len(args)}")
        if business_id is not None:
            args.append(business_id)
            clauses.append("endpoint_id IN " + _OF_BUSINESS.format(n=len(args)))
        if state is not None:
            args.append(state)
            clauses.append(f"state = ${len(args)}")
        if before is not None and before_id is not None:
            # The order is (created_at DESC, delivery_id): rows of one batch share created_at.
            args += [before, before_id]
            n = len(args)
            clauses.append(
                f"(created_at < ${n - 1} OR (created_at = ${n - 1} AND delivery_id > ${n}))"
            )
        elif before is not None:
            args.append(before)
            clauses.append(f"created_at < ${len(args)}")
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        args.append(limit)
        rows = await self.pool.fetch(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries {where}"
            f" ORDER BY created_at DESC, delivery_id LIMIT ${len(args)}",
            *args,
        )
        return [_delivery(r) for r in rows]

    async def counts(self, endpoint_id: str) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT state, count(*) AS n FROM webhook_deliveries WHERE endpoint_id = $1"
            " GROUP BY state",
            endpoint_id,
        )
        return {r["state"]: r["n"] for r in rows}

    async def replay_delivery(self, delivery_id: str, now: datetime) -> Head | None:
        """Send again (same webhook-id): a finished delivery goes back to pending with a fresh
        schedule; a pending one is simply due now."""
        row = await self.pool.fetchrow(
            f"""
            UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $2,
                failures = CASE WHEN state = 'pending' THEN failures ELSE 0 END,
                first_attempt_at = CASE WHEN state = 'pending' THEN first_attempt_at END,
                replays = replays + CASE WHEN state = 'pending' THEN 0 ELSE 1 END,
                finished_at = NULL
             WHERE delivery_id = $1
               AND endpoint_id IN (SELECT endpoint_id FROM webhook_endpoints WHERE NOT deleted)
            RETURNING {_HEAD_COLUMNS}
            """,
            delivery_id,
            now,
        )
        return _head(row) if row else None

    async def replay_dead(self, endpoint_id: str, now: datetime) -> int:
        result = await self.pool.execute(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $2,"
            " failures = 0, first_attempt_at = NULL, replays = replays + 1, finished_at = NULL"
            " WHERE endpoint_id = $1 AND state = 'dead'",
            endpoint_id,
            now,
        )
        return int(result.split()[-1])

    async def replay_events(self, rows: list[NewDelivery], now: datetime) -> int:
        """Deliveries for events replayed from the event store: new ones are inserted, finished
        ones go back to pending (same webhook-id), pending ones are left as they are."""
        if not rows:
            return 0
        result = await self.pool.fetch(
            _INSERT_DELIVERIES
            + """
            ON CONFLICT (delivery_id) DO UPDATE SET state = 'pending',
                next_attempt_at = EXCLUDED.next_attempt_at, failures = 0,
                first_attempt_at = NULL, replays = webhook_deliveries.replays + 1,
                finished_at = NULL
             WHERE webhook_deliveries.state <> 'pending'
            RETURNING delivery_id
            """,
            *_delivery_arrays(rows),
            now,
        )
        return len(result)

    async def prune(self, finished_before: datetime) -> int:
        result = await self.pool.execute(
            "DELETE FROM webhook_deliveries WHERE state IN ('succeeded', 'cancelled')"
            " AND finished_at < $1",
            finished_before,
        )
        return int(result.split()[-1])


def utcnow() -> datetime:
    return datetime.now(UTC)
