"""Delivery scheduling: per-endpoint lanes, bounded concurrency, breakers and pauses.

The durable state is in PostgreSQL (each delivery's state and `next_attempt_at`); this keeps
only what a restart rebuilds from it: the head of every lane (the oldest pending delivery of
one conversation for one endpoint) and a heap of those heads by due time.

- Isolation: each endpoint has its own lanes, its own limit of deliveries in flight, its own
  circuit breaker (pybreaker) and its own pause (throttling). A slow or dead endpoint uses up
  only its own slots; the others are dispatched as before.
- Order: a lane sends one delivery at a time, oldest first; the next event of a conversation
  goes only once the previous one succeeded or was dead-lettered.
- Breaker: after BREAKER_FAIL_MAX failures in a row the endpoint is left alone for
  BREAKER_RESET_SECONDS, then one probe; when the probe gets through, the endpoint has
  recovered and every retry it was waiting for is due at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pybreaker

from services.webhook_relay import metrics
from services.webhook_relay.domain import Endpoint
from services.webhook_relay.schedule import Decision, Outcome, Policy, decide
from services.webhook_relay.sender import Sender
from services.webhook_relay.store import Delivery, Head, RelayStore

log = logging.getLogger("webhook_relay.dispatch")

OnGone = Callable[[str, str], Awaitable[None]]
IDLE_WAKE = 1.0  # seconds: the loop looks again at least this often
ERROR_BACKOFF = 2.0
_counter = itertools.count()


class _Failed(Exception):
    """Reported to the breaker for an attempt that failed."""


@dataclass
class Lane:
    key: str
    head: Head | None = None
    busy: bool = False
    hints: int = 0  # new deliveries announced while busy: look again before giving up


@dataclass
class EndpointRuntime:
    endpoint: Endpoint
    breaker: pybreaker.CircuitBreaker
    lanes: dict[str, Lane] = field(default_factory=dict)
    heap: list[tuple[float, int, str, str]] = field(default_factory=list)
    in_flight: int = 0
    paused_until: float = 0.0
    throttle_streak: int = 0

    @property
    def endpoint_id(self) -> str:
        return self.endpoint.endpoint_id

    def schedule(self, lane: Lane, head: Head) -> None:
        lane.head = head
        if not lane.busy:
            heapq.heappush(
                self.heap, (head.due.timestamp(), next(_counter), lane.key, head.delivery_id)
            )

    def gate(self, now: float, max_in_flight: int) -> tuple[int, float]:
        """How many may be in flight now, and when to look again if none."""
        state = self.breaker.current_state
        if state == pybreaker.STATE_OPEN:
            opened = self.breaker._state_storage.opened_at
            reopen = (opened.timestamp() if opened else now) + self.breaker.reset_timeout
            return (0, reopen) if now < reopen else (1, math.inf)
        if state == pybreaker.STATE_HALF_OPEN:
            return 1, math.inf  # one probe at a time
        return max_in_flight, math.inf

    def status(self, now: float) -> dict[str, object]:
        return {
            "breaker": self.breaker.current_state,
            "paused_until": (
                datetime.fromtimestamp(self.paused_until, UTC).isoformat()
                if self.paused_until > now
                else None
            ),
            "in_flight": self.in_flight,
            "lanes": len(self.lanes),
        }


class Dispatcher:
    def __init__(
        self,
        relay: RelayStore,
        sender: Sender,
        policy: Policy,
        max_in_flight: int,
        breaker_fail_max: int,
        breaker_reset_seconds: float,
        on_gone: OnGone,
        reconcile_seconds: float = 30.0,
        retention: timedelta | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.relay = relay
        self.sender = sender
        self.policy = policy
        self.max_in_flight = max(1, max_in_flight)
        self.breaker_fail_max = breaker_fail_max
        self.breaker_reset_seconds = breaker_reset_seconds
        self.on_gone = on_gone
        self.reconcile_seconds = reconcile_seconds
        self.retention = retention
        self.clock = clock
        self.rng = rng or random.Random()
        self.endpoints: dict[str, EndpointRuntime] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.loaded = asyncio.Event()

    # --- what the rest of the relay tells it ----------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def enqueued(self, heads: list[Head]) -> None:
        """New deliveries, committed. A lane that is free and unknown gets its head now; a
        busy lane looks for them when its current delivery is done."""
        for head in heads:
            rt = self.endpoints.get(head.endpoint_id)
            if rt is None:
                continue  # sync_endpoint loads it from the database
            lane = rt.lanes.get(head.order_key)
            if lane is None:
                lane = rt.lanes[head.order_key] = Lane(head.order_key)
                rt.schedule(lane, head)
            elif lane.busy:
                lane.hints += 1
            elif lane.head is None or head.ordinal < lane.head.ordinal:
                rt.schedule(lane, head)
        self.wake()

    async def sync_endpoint(self, endpoint: Endpoint, reload_heads: bool = True) -> None:
        """An endpoint was created or changed: take its configuration, and (by default) read
        the heads of its lanes again from the database."""
        if endpoint.deleted:
            self.endpoints.pop(endpoint.endpoint_id, None)
            return
        rt = self.endpoints.get(endpoint.endpoint_id)
        if rt is None:
            rt = self.endpoints[endpoint.endpoint_id] = EndpointRuntime(
                endpoint,
                pybreaker.CircuitBreaker(
                    fail_max=self.breaker_fail_max,
                    reset_timeout=self.breaker_reset_seconds,
                    name=endpoint.endpoint_id,
                    throw_new_error_on_trip=False,
                ),
            )
        elif endpoint.enabled and not rt.endpoint.enabled:
            # Enabled again: a fresh start, nothing held against it.
            rt.breaker.close()
            rt.paused_until = 0.0
            rt.throttle_streak = 0
        rt.endpoint = endpoint
        if reload_heads:
            self._merge(rt, await self.relay.lane_heads(endpoint.endpoint_id))
        self.wake()

    def forget(self, endpoint_id: str) -> None:
        self.endpoints.pop(endpoint_id, None)

    def status(self, endpoint_id: str) -> dict[str, object] | None:
        rt = self.endpoints.get(endpoint_id)
        return rt.status(self.clock()) if rt else None

    def _merge(self, rt: EndpointRuntime, heads: list[Head]) -> None:
        # Never drops a lane: one whose head turns out to be finished is tidied when tried.
        for head in heads:
            lane = rt.lanes.get(head.order_key)
            if lane is None:
                lane = rt.lanes[head.order_key] = Lane(head.order_key)
            if lane.busy:
                lane.hints += 1
            elif lane.head != head:
                rt.schedule(lane, head)

    # --- the loop -------------------------------------------------------------------------

    async def load(self) -> None:
        for endpoint in await self.relay.list_endpoints():
            await self.sync_endpoint(endpoint)
        self.loaded.set()

    async def run(self) -> None:
        while True:
            try:
                await self.load()
                break
            except Exception as exc:
                log.warning("cannot load endpoints yet", extra={"fields": {"error": repr(exc)}})
                await asyncio.sleep(ERROR_BACKOFF)
        housekeeping = asyncio.create_task(self._housekeeping())
        try:
            while True:
                self._wake.clear()
                now = self.clock()
                next_at = now + IDLE_WAKE
                for rt in list(self.endpoints.values()):
                    next_at = min(next_at, self._dispatch(rt, now))
                delay = next_at - self.clock()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            housekeeping.cancel()

    async def stop(self, grace: float) -> None:
        """Let deliveries in flight finish (bounded); what is cut off stays pending."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)

    def _dispatch(self, rt: EndpointRuntime, now: float) -> float:
        """Start what is due on one endpoint; returns when it next needs a look."""
        endpoint_id = rt.endpoint_id
        paused = not rt.endpoint.enabled or now < rt.paused_until
        limit, reopen = (0, math.inf) if paused else rt.gate(now, self.max_in_flight)
        metrics.endpoint_paused.labels(endpoint_id).set(1 if paused or limit == 0 else 0)
        metrics.lanes.labels(endpoint_id).set(len(rt.lanes))
        if not rt.endpoint.enabled:
            return math.inf
        if now < rt.paused_until:
            return rt.paused_until
        if limit == 0:
            return reopen
        while rt.in_flight < limit and rt.heap:
            due, _, key, delivery_id = rt.heap[0]
            lane = rt.lanes.get(key)
            if (
                lane is None
                or lane.busy
                or lane.head is None
                or lane.head.delivery_id != delivery_id
                or lane.head.due.timestamp() != due
            ):
                heapq.heappop(rt.heap)  # stale entry
                continue
            if due > now:
                return due
            heapq.heappop(rt.heap)
            self._start(rt, lane)
        return math.inf

    def _start(self, rt: EndpointRuntime, lane: Lane) -> None:
        assert lane.head is not None
        lane.busy = True
        rt.in_flight += 1
        metrics.in_flight.labels(rt.endpoint_id).inc()
        task = asyncio.create_task(self._run_lane(rt, lane, lane.head))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_lane(self, rt: EndpointRuntime, lane: Lane, head: Head) -> None:
        following: Head | None = head
        try:
            following = await self._deliver(rt, lane, head)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery step failed; will try again", extra={"fields": {}})
            due = datetime.fromtimestamp(self.clock() + ERROR_BACKOFF, UTC)
            following = replace(head, due=due)
        finally:
            lane.busy = False
            rt.in_flight -= 1
            metrics.in_flight.labels(rt.endpoint_id).dec()
            if following is None:
                if rt.lanes.get(lane.key) is lane:
                    del rt.lanes[lane.key]
            else:
                rt.schedule(lane, following)
            self.wake()

    async def _deliver(self, rt: EndpointRuntime, lane: Lane, head: Head) -> Head | None:
        """One attempt at the lane's head; returns the lane's next head (None: lane empty)."""
        row = await self.relay.delivery(head.delivery_id)
        if row is None or row.state != "pending":
            return await self._next_head(rt, lane)
        if row.next_attempt_at.timestamp() > self.clock() + 0.001:
            return replace(head, due=row.next_attempt_at)  # moved meanwhile
        endpoint = rt.endpoint
        troubled = rt.breaker.current_state != pybreaker.STATE_CLOSED
        outcome = await self.sender.send(endpoint, row.delivery_id, row.body)
        self._feed_breaker(rt, outcome)
        decision = self._decide(rt, row, outcome)
        attempted = datetime.fromtimestamp(self.clock(), UTC)
        next_at = attempted + timedelta(seconds=decision.retry_in)
        recorded = await self._record(row, decision, outcome, attempted, next_at)
        metrics.attempts.labels(endpoint.endpoint_id, outcome.kind).inc()
        metrics.attempt_duration.labels(outcome.kind).observe(outcome.duration)
        self._log_attempt(row, outcome, decision)
        if decision.pause_endpoint:
            rt.paused_until = max(rt.paused_until, self.clock() + decision.pause_endpoint)
        if decision.disable_endpoint:
            await self.on_gone(endpoint.endpoint_id, f"the endpoint answered {outcome.status}")
        if outcome.kind == "delivered" and troubled:
            await self._recovered(rt)
        if recorded and decision.state == "pending":
            return replace(head, due=next_at)
        return await self._next_head(rt, lane)

    def _feed_breaker(self, rt: EndpointRuntime, outcome: Outcome) -> None:
        """Throttling and 410 are answers from a working endpoint: not breaker failures."""
        if outcome.kind in ("throttled", "gone"):
            return
        with contextlib.suppress(_Failed, pybreaker.CircuitBreakerError), rt.breaker.calling():
            if outcome.kind == "failed":
                raise _Failed(outcome.error)

    def _decide(self, rt: EndpointRuntime, row: Delivery, outcome: Outcome) -> Decision:
        if outcome.kind == "throttled":
            rt.throttle_streak += 1
        elif outcome.kind == "delivered":
            rt.throttle_streak = 0
        age = 0.0
        if row.first_attempt_at is not None:
            age = max(0.0, self.clock() - row.first_attempt_at.timestamp())
        return decide(outcome, row.failures, age, self.policy, rt.throttle_streak, self.rng)

    async def _record(
        self,
        row: Delivery,
        decision: Decision,
        outcome: Outcome,
        attempted: datetime,
        next_at: datetime,
    ) -> bool:
        # The endpoint has been called: keep trying to write that down (database restarting)
        # rather than forget it and send again for nothing.
        while True:
            try:
                return await self.relay.record_attempt(
                    row.delivery_id,
                    decision.state,
                    decision.failures,
                    next_at,
                    attempted,
                    outcome.status,
                    outcome.error or None,
                )
            except Exception as exc:
                log.warning("attempt not recorded yet", extra={"fields": {"error": repr(exc)}})
                await asyncio.sleep(ERROR_BACKOFF)

    async def _next_head(self, rt: EndpointRuntime, lane: Lane) -> Head | None:
        while True:
            hints = lane.hints
            head = await self.relay.lane_head(rt.endpoint_id, lane.key)
            if head is not None or lane.hints == hints:
                return head

    async def _recovered(self, rt: EndpointRuntime) -> None:
        moved = await self.relay.pull_forward(rt.endpoint_id, datetime.now(UTC))
        log.info(
            "endpoint recovered; its waiting retries are due now",
            extra={"fields": {"endpoint": rt.endpoint_id, "moved": moved}},
        )
        rt.paused_until = 0.0
        self._merge(rt, await self.relay.lane_heads(rt.endpoint_id))

    def _log_attempt(self, row: Delivery, outcome: Outcome, decision: Decision) -> None:
        if outcome.kind == "delivered":
            return
        fields = {
            "endpoint": row.endpoint_id,
            "delivery_id": row.delivery_id,
            "event_type": row.event_type,
            "status": outcome.status,
            "error": outcome.error[:200],
            "state": decision.state,
            "retry_in": round(decision.retry_in, 3),
        }
        if decision.state == "dead":
            metrics.dead_lettered.labels(row.endpoint_id).inc()
            log.error("delivery dead-lettered", extra={"fields": fields})
        else:
            log.warning("delivery attempt failed", extra={"fields": fields})

    # --- housekeeping ---------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Safety net and tidying: read every endpoint and its lane heads again now and then
        (anything missed is picked up), and drop finished deliveries past their retention."""
        last_prune = 0.0
        while True:
            await asyncio.sleep(self.reconcile_seconds)
            try:
                known = set(self.endpoints)
                current = await self.relay.list_endpoints()
                for endpoint in current:
                    await self.sync_endpoint(endpoint)
                for gone in known - {e.endpoint_id for e in current}:
                    self.forget(gone)
                if self.retention and self.clock() - last_prune > 600:
                    last_prune = self.clock()
                    cutoff = datetime.now(UTC) - self.retention
                    pruned = await self.relay.prune(cutoff)
                    if pruned:
                        log.info("pruned old deliveries", extra={"fields": {"count": pruned}})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("housekeeping failed", extra={"fields": {"error": repr(exc)}})
