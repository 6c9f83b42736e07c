"""What to do after one delivery attempt. Pure: outcome in, decision out.

- 2xx: delivered.
- 410 Gone: the endpoint is disabled; the delivery stays pending and goes first when the
  endpoint is enabled again.
- 429, 502, 504 (and a Retry-After on them): throttled. The endpoint pauses (Retry-After, or a
  pause that doubles while the throttling lasts) and the delivery is retried when the pause
  ends. Throttling does not advance the retry schedule, but a delivery still throttled once
  the whole schedule's time has passed since its first attempt is given up like any other.
- anything else (other 3xx/4xx/5xx, timeout, connection refused, refused address): failed.
  Retry after the next step of the schedule, with jitter, or later if Retry-After says so;
  after the last step the delivery is dead.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DEFAULT_SCHEDULE = "5s,5m,30m,2h,5h,10h,14h,20h,24h"
THROTTLED = frozenset({429, 502, 504})
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (examples: 500ms, 5s, 5m, 2h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_schedule(text: str) -> tuple[float, ...]:
    steps = tuple(parse_duration(part) for part in text.split(",") if part.strip())
    if not steps:
        raise ValueError("the retry schedule needs at least one step")
    return steps


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class Outcome:
    """One attempt's result. status None: no HTTP answer (timeout, connection, refused)."""

    status: int | None
    error: str = ""
    retry_after: float | None = None
    duration: float = 0.0

    @property
    def kind(self) -> str:
        if self.status is not None and 200 <= self.status < 300:
            return "delivered"
        if self.status == 410:
            return "gone"
        if self.status in THROTTLED:
            return "throttled"
        return "failed"


@dataclass(frozen=True)
class Policy:
    schedule: tuple[float, ...]
    jitter: float = 0.2  # each wait is stretched or shrunk by up to this fraction
    max_pause: float = 3600.0  # cap on any Retry-After we honour
    throttle_base: float = 1.0  # first pause on a throttle without Retry-After

    @property
    def give_up_after(self) -> float:
        return sum(self.schedule)

    def jittered(self, seconds: float, rng: random.Random) -> float:
        return seconds * (1 + self.jitter * (2 * rng.random() - 1))

    def throttle_pause(self, outcome: Outcome, streak: int) -> float:
        """How long the endpoint pauses after its `streak`-th throttle in a row (1-based)."""
        if outcome.retry_after is not None:
            return min(outcome.retry_after, self.max_pause)
        return min(self.throttle_base * 2 ** max(0, streak - 1), self.max_pause, 300.0)


@dataclass(frozen=True)
class Decision:
    state: str  # pending | succeeded | dead
    failures: int  # failed attempts that advanced the schedule
    retry_in: float  # seconds until the next attempt (pending only)
    pause_endpoint: float = 0.0  # seconds the whole endpoint waits (throttled)
    disable_endpoint: bool = False  # 410


def decide(
    outcome: Outcome,
    failures: int,
    age: float,
    policy: Policy,
    throttle_streak: int,
    rng: random.Random,
) -> Decision:
    """`failures`: failed attempts so far; `age`: seconds since this delivery's first attempt
    (0 for the first); `throttle_streak`: the endpoint's throttles in a row, this one included."""
    kind = outcome.kind
    if kind == "delivered":
        return Decision("succeeded", failures, 0.0)
    if kind == "gone":
        return Decision("pending", failures, 0.0, disable_endpoint=True)
    if kind == "throttled":
        if age >= policy.give_up_after:
            return Decision("dead", failures, 0.0)
        pause = policy.throttle_pause(outcome, throttle_streak)
        return Decision("pending", failures, pause, pause_endpoint=pause)
    failures += 1
    if failures > len(policy.schedule):
        return Decision("dead", failures, 0.0)
    wait = policy.jittered(policy.schedule[failures - 1], rng)
    if outcome.retry_after is not None:
        wait = max(wait, min(outcome.retry_after, policy.max_pause))
    return Decision("pending", failures, wait)
