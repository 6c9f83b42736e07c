"""The campaigns' runner, on one instance at a time (Leadership): the durable scheduler
(due times in `campaign_runs`: a scheduled start, the end of a messaging-limit pause, so
a restart loses none) and the dispatcher of running campaigns.

Each tick takes, per running campaign, what its bucket allows (a share of its number's
rate, split between the number's running campaigns: shared/campaigns/pacing.py) of its
pending recipients, checks the business's messaging limit (unique customers reached per
moving 24 h, `campaign_reach`), publishes each recipient's SendBusinessMessage to the
conversation (with confirms) and marks them dispatched, in one transaction: a crash after
the publish and before the commit publishes them again under the same message ids, which
the conversation records once and outbound sends once. A campaign the limit stops is
paused (`messaging_limit`) until the window frees a place."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from services.campaigns.outcomes import complete_if_done
from shared.broker.bus import Bus
from shared.campaigns.pacing import WINDOW, Bucket, Reach, allowed, campaign_rate
from shared.crypto.erased import sendable
from shared.events.business import contact_id_for
from shared.events.campaigns import (
    CampaignPaused,
    CampaignRunning,
    RecipientSkipped,
    campaign_stream,
)
from shared.eventstore import new
from shared.eventstore.postgres import PostgresEventStore
from shared.meta.templates import render
from shared.schemas import SendBusinessMessage

log = logging.getLogger("campaigns")
NAME = "campaigns.runner"
STAGE = "conversation"
MAX_BATCH = 200  # recipients published per campaign per tick
TICK = 0.05  # seconds between ticks while campaigns run
IDLE = 0.2  # and while none does
MARKETING_LIMIT_FOR = timedelta(hours=24)  # after Meta's 131049 for a customer


@dataclass
class Runner:
    pool: asyncpg.Pool
    bus: Bus
    default_rate: float = 80.0
    buckets: dict[str, Bucket] = field(default_factory=dict)
    dispatched: int = 0

    async def follow(self) -> None:
        while True:
            try:
                busy = await self.tick()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("campaign tick failed", extra={"fields": {"error": type(exc).__name__}})
                busy = False
                await asyncio.sleep(1.0)
            await asyncio.sleep(TICK if busy else IDLE)

    async def tick(self) -> bool:
        await self.wake_due()
        runs = await self.pool.fetch(
            "SELECT r.campaign_id, r.business_id, r.phone_number_id, r.variants,"
            " COALESCE(n.send_rate_per_second, $1) AS rate"
            " FROM campaign_runs r LEFT JOIN directory_numbers n USING (phone_number_id)"
            " WHERE r.state = 'running' ORDER BY r.campaign_id",
            self.default_rate,
        )
        if not runs:
            return False
        per_number: dict[str, int] = defaultdict(int)
        for run in runs:
            per_number[run["phone_number_id"]] += 1
        now = time.monotonic()
        for run in runs:
            rate = campaign_rate(run["rate"], per_number[run["phone_number_id"]])
            bucket = self.buckets.setdefault(run["campaign_id"], Bucket(rate))
            bucket.rate = rate
            want = bucket.take(now, MAX_BATCH)
            if want:
                used = await self.dispatch(run, want)
                bucket.tokens += want - used  # unused tokens stay (capped at a second)
        return True

    async def wake_due(self) -> None:
        """Scheduled starts whose time came, and limit pauses whose window moved."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._wake_due(conn)

    async def _wake_due(self, conn: asyncpg.Connection) -> None:
        # The state and its event in one transaction: the api never misses the change.
        rows = await conn.fetch(
            "WITH due AS (SELECT campaign_id, state AS was FROM campaign_runs"
            " WHERE due_at <= now() AND (state = 'scheduled' OR (state = 'paused'"
            " AND paused_by = 'messaging_limit')) FOR UPDATE)"
            " UPDATE campaign_runs r SET state = 'running', due_at = NULL, paused_by = NULL,"
            " updated_at = now() FROM due WHERE r.campaign_id = due.campaign_id"
            " RETURNING r.campaign_id, r.business_id, due.was"
        )
        for row in rows:
            reason = "scheduled" if row["was"] == "scheduled" else "window"
            running = CampaignRunning(
                campaign_id=row["campaign_id"], business_id=row["business_id"], reason=reason
            )
            await PostgresEventStore(conn=conn).append(
                campaign_stream(row["campaign_id"]), [new(running)]
            )

    async def dispatch(self, run: asyncpg.Record, want: int) -> int:
        variants = run["variants"]
        if isinstance(variants, str):
            variants = msgspec.json.decode(variants)
        campaign, business = run["campaign_id"], run["business_id"]
        number = run["phone_number_id"]
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT seq, customer, address, variant, components, message_id FROM campaign_sends"
                " WHERE campaign_id = $1 AND state = 'pending' ORDER BY seq LIMIT $2"
                " FOR UPDATE SKIP LOCKED",
                campaign,
                want,
            )
            if not rows:
                return 0
            rows = await self._skip_unsendable(conn, run, variants, rows)
            if not rows:
                return 0
            reach = await self._reach(conn, business)
            already = {
                r["customer"]
                for r in await conn.fetch(
                    "SELECT customer FROM campaign_reach WHERE business_id = $1"
                    " AND customer = ANY($2::text[]) AND reached_at > now() - $3::interval",
                    business,
                    [r["customer"] for r in rows],
                    WINDOW,
                )
            }
            ok, stopped = allowed(reach, [r["customer"] for r in rows], already)
            go = rows[: len(ok)]
            await asyncio.gather(
                *(
                    self.bus.publish(STAGE, f"{number}.{r['customer']}", _command(run, variants, r))
                    for r in go
                )
            )
            await conn.executemany(
                "UPDATE campaign_sends SET state = 'dispatched'"
                " WHERE campaign_id = $1 AND seq = $2",
                [(campaign, r["seq"]) for r in go],
            )
            await conn.executemany(
                "INSERT INTO campaign_reach (business_id, customer, reached_at) VALUES ($1, $2,"
                " now()) ON CONFLICT (business_id, customer) DO UPDATE SET reached_at ="
                " CASE WHEN campaign_reach.reached_at > now() - $3::interval"
                " THEN campaign_reach.reached_at ELSE now() END",
                [(business, r["customer"], WINDOW) for r in go],
            )
            if stopped:
                await self._pause_for_limit(conn, run, reach)
        self.dispatched += len(go)
        return len(go)

    async def _skip_unsendable(
        self,
        conn: asyncpg.Connection,
        run: asyncpg.Record,
        variants: list[dict[str, Any]],
        rows: list[asyncpg.Record],
    ) -> list[asyncpg.Record]:
        """The rows still to send. For a MARKETING template, a contact who opted out since
        the start is skipped (`opted_out`), and one Meta refused for its per-user marketing
        limit (131049) within 24 h, in any campaign, too (`marketing_limit`): Meta would
        refuse them again. Utility templates still go."""
        campaign, business = run["campaign_id"], run["business_id"]

        def marketing(row: asyncpg.Record) -> bool:
            v = variants[row["variant"]] if row["variant"] < len(variants) else variants[0]
            return str(v.get("category", "")).upper() == "MARKETING"

        chosen = [r for r in rows if marketing(r)]
        if not chosen:
            return rows
        by_contact = {contact_id_for(business, r["customer"]): r for r in chosen}
        reasons: dict[int, str] = {}
        for contact in await conn.fetchval(
            "SELECT coalesce(array_agg(contact_id), '{}') FROM campaign_opt_outs"
            " WHERE contact_id = ANY($1::text[]) AND opted_out",
            list(by_contact),
        ):
            reasons[by_contact[contact]["seq"]] = "opted_out"
        by_customer = {r["customer"]: r for r in chosen}
        for customer in await conn.fetchval(
            "SELECT coalesce(array_agg(customer), '{}') FROM campaign_marketing_limited"
            " WHERE business_id = $1 AND customer = ANY($2::text[])"
            " AND limited_at > now() - $3::interval",
            business,
            list(by_customer),
            MARKETING_LIMIT_FOR,
        ):
            reasons.setdefault(by_customer[customer]["seq"], "marketing_limit")
        if not reasons:
            return rows
        await conn.executemany(
            "UPDATE campaign_sends SET state = 'skipped' WHERE campaign_id = $1 AND seq = $2",
            [(campaign, seq) for seq in sorted(reasons)],
        )
        store = PostgresEventStore(conn=conn)
        await store.append(
            campaign_stream(campaign),
            [
                new(
                    RecipientSkipped(
                        campaign_id=campaign, business_id=business, seq=seq, reason=reason
                    ),
                    "skipped", campaign, str(seq),
                )
                for seq, reason in sorted(reasons.items())
            ],
        )  # fmt: skip
        await complete_if_done(conn, store, campaign)
        log.info(
            "recipients skipped", extra={"fields": {"campaign": campaign, "skipped": len(reasons)}}
        )
        return [r for r in rows if r["seq"] not in reasons]

    async def _reach(self, conn: asyncpg.Connection, business: str) -> Reach:
        # Meta's latest word on the tier (account.py) wins over the one set on the business.
        limit = await conn.fetchval(
            "SELECT CASE WHEN t.business_id IS NOT NULL THEN t.messaging_limit"
            " ELSE b.messaging_limit END FROM directory_businesses b"
            " LEFT JOIN campaign_tiers t USING (business_id) WHERE b.business_id = $1",
            business,
        )
        row = await conn.fetchrow(
            "SELECT count(*) AS reached, min(reached_at) AS oldest FROM campaign_reach"
            " WHERE business_id = $1 AND reached_at > now() - $2::interval",
            business,
            WINDOW,
        )
        return Reach(limit, row["reached"], row["oldest"])

    async def _pause_for_limit(
        self, conn: asyncpg.Connection, run: asyncpg.Record, reach: Reach
    ) -> None:
        until = reach.frees_at() or datetime.now(UTC) + WINDOW
        await conn.execute(
            "UPDATE campaign_runs SET state = 'paused', paused_by = 'messaging_limit',"
            " due_at = $2, updated_at = now() WHERE campaign_id = $1 AND state = 'running'",
            run["campaign_id"],
            until,
        )
        await PostgresEventStore(conn=conn).append(
            campaign_stream(run["campaign_id"]),
            [
                new(
                    CampaignPaused(
                        campaign_id=run["campaign_id"],
                        business_id=run["business_id"],
                        reason="messaging_limit",
                        until=until.isoformat(),
                    )
                )
            ],
        )
        log.info(
            "campaign paused by the messaging limit",
            extra={"fields": {"campaign": run["campaign_id"]}},
        )


def _command(
    run: asyncpg.Record, variants: list[dict[str, Any]], row: asyncpg.Record
) -> SendBusinessMessage:
    variant = variants[row["variant"]] if row["variant"] < len(variants) else variants[0]
    components = row["components"]
    if isinstance(components, str):
        components = msgspec.json.decode(components)
    template: dict[str, Any] = {"name": variant["name"], "language": {"code": variant["language"]}}
    if components:
        template["components"] = components
    return SendBusinessMessage(
        message_id=row["message_id"],
        business_id=run["business_id"],
        conversation_id=f"{run['phone_number_id']}.{row['customer']}",
        phone_number_id=run["phone_number_id"],
        to=sendable(row["address"] or row["customer"]),
        message_type="template",
        payload={"type": "template", "template": template},
        author="business",
        actor=f"campaign:{run['campaign_id']}",
        text=render(variant, components or []),
    )
