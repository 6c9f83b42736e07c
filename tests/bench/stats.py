"""The benchmark's arithmetic, kept pure so unit tests can check it: percentiles, the open-loop
arrival schedule, reply accounting (lost, duplicated, out of order) and the pile-up rule."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Completion below this share of the offered messages means the pipeline fell behind.
MIN_COMPLETION = 0.98
# p99 of the last third of a run may exceed the first third's by this factor plus slack
# (absolute, for noise at small latencies) before the run counts as piling up.
P99_GROWTH_FACTOR = 2.0
P99_GROWTH_SLACK_S = 0.050


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (the smallest value with at least p% of values at or below
    it): never interpolates, so p99.9 of 1,000 samples is the 999th, a latency that really
    happened. NaN for no values."""
    if not values:
        return math.nan
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    ordered = sorted(values)
    # Rounded first: 99.9 / 100 * 1000 is 999.0000000000001 in floating point, not 999.
    rank = math.ceil(round(p / 100 * len(ordered), 9))
    return ordered[max(rank, 1) - 1]


def summary_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50, p99, p99.9 and max of latencies given in seconds, in milliseconds."""
    ordered = sorted(latencies_s)
    return {
        "count": len(ordered),
        "p50_ms": percentile(ordered, 50) * 1e3,
        "p99_ms": percentile(ordered, 99) * 1e3,
        "p99_9_ms": percentile(ordered, 99.9) * 1e3,
        "max_ms": (ordered[-1] * 1e3) if ordered else math.nan,
    }


def schedule(rate: float, duration: float, start: float = 0.0) -> list[float]:
    """Open-loop arrival times: request i is due at start + i/rate, whatever happened to the
    requests before it. Latency is measured from these times, so a stalled server shows up
    as latency instead of as a generator that politely waited (coordinated omission)."""
    if rate <= 0 or duration <= 0:
        return []
    count = round(rate * duration)
    return [start + i / rate for i in range(count)]


def share(indexes: Iterable[int], workers: int, worker: int, customers: int) -> list[int]:
    """The message indexes worker `worker` of `workers` sends: all messages of a customer go
    through one worker (customer = index % customers), so one process sends each customer's
    messages in order."""
    return [i for i in indexes if (i % customers) % workers == worker]


@dataclass
class Accounting:
    """What came back for the messages that ingress acknowledged."""

    expected: int = 0
    answered: int = 0
    lost: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    # Replies to messages that were never acknowledged (a timed-out request that ingress did
    # store): legitimate, reported for information.
    unacknowledged_answered: int = 0
    lost_ids: list[str] = field(default_factory=list)


def account(
    accepted: dict[str, list[str]],
    replies: Sequence[tuple[str, str]],
    inbox_order: dict[str, list[str]] | None = None,
    unacknowledged: Iterable[str] = (),
) -> Accounting:
    """Count lost, duplicated and out-of-order replies.

    accepted: customer -> ids of their messages that ingress answered 200, in posting order.
    replies: (customer, id of the message answered) in the order the Graph API received them.
    inbox_order: customer -> ids in the order the pipeline recorded them (its sequence
    numbers); the order replies must follow. Defaults to the posting order.
    unacknowledged: ids posted without a 200 (timeouts): a reply to one is not an error.

    A message is lost when acknowledged and never answered; every reply beyond the first to
    one message is a duplicate; a reply is out of order when a reply to a message recorded
    later for the same customer arrived before it.
    """
    order = inbox_order if inbox_order is not None else accepted
    unacked = set(unacknowledged)
    result = Accounting(expected=sum(len(v) for v in accepted.values()))
    seen: dict[str, int] = {}
    by_customer: dict[str, list[str]] = {}
    for customer, message in replies:
        seen[message] = seen.get(message, 0) + 1
        if seen[message] == 1:
            by_customer.setdefault(customer, []).append(message)
        else:
            result.duplicates += 1
    for ids in accepted.values():
        for message in ids:
            if message in seen:
                result.answered += 1
            else:
                result.lost += 1
                result.lost_ids.append(message)
    result.unacknowledged_answered = sum(1 for m in seen if m in unacked)
    for customer, answered in by_customer.items():
        rank = {m: i for i, m in enumerate(order.get(customer, []))}
        highest = -1
        for message in answered:
            position = rank.get(message)
            if position is None:
                continue  # not recorded in the inbox: cannot be ordered (counted as lost)
            if position < highest:
                result.out_of_order += 1
            highest = max(highest, position)
    return result


@dataclass
class PileUp:
    sustained: bool
    completion: float
    p99_first_ms: float
    p99_last_ms: float
    reasons: list[str]


def pile_up(
    scheduled: Sequence[float],
    latencies: Sequence[float | None],
    offered: int,
    errors: int,
    deadline: float,
) -> PileUp:
    """Did the pipeline keep up at this rate?

    scheduled/latencies: per message, its arrival time and its reply latency (None: no reply);
    deadline: latest arrival + the LLM's latency + 2 s. Sustained means all of:
    - every webhook was acknowledged 200 (errors == 0);
    - completion: at least 98% of the offered messages were answered by the deadline;
    - no growth: p99 latency of the last third of the arrivals is at most 2x the first
      third's + 50 ms (a growing backlog makes later messages wait longer and longer).
    """
    reasons: list[str] = []
    on_time = sum(
        1
        for t, lat in zip(scheduled, latencies, strict=True)
        if lat is not None and t + lat <= deadline
    )
    completion = on_time / offered if offered else 0.0
    if errors:
        reasons.append(f"{errors} webhooks not acknowledged 200")
    if completion < MIN_COMPLETION:
        reasons.append(f"completion {completion:.1%} < {MIN_COMPLETION:.0%}")
    pairs = sorted(zip(scheduled, latencies, strict=True))
    third = len(pairs) // 3
    # An unanswered message counts as infinitely late: it is the worst kind of growth.
    first = [lat if lat is not None else math.inf for _, lat in pairs[:third]]
    last = [lat if lat is not None else math.inf for _, lat in pairs[len(pairs) - third :]]
    p99_first = percentile(first, 99)
    p99_last = percentile(last, 99)
    if third and not p99_last <= P99_GROWTH_FACTOR * p99_first + P99_GROWTH_SLACK_S:
        reasons.append(f"p99 grew from {p99_first * 1e3:.0f} ms to {p99_last * 1e3:.0f} ms")
    return PileUp(not reasons, completion, p99_first * 1e3, p99_last * 1e3, reasons)


STALL_S = 0.1


def stalls(res: dict[str, Any]) -> dict[str, float]:
    """Acks over 100 ms, and the longest span in which requests were owed an answer and
    none came: a server that stopped (GC, flow control, the machine) shows here however
    its latencies average out."""
    owed = sorted(zip(res["scheduled"], res["done"], strict=True))
    done = sorted(res["done"])
    longest, i = 0.0, 0
    # Walk the answers in time; between two answers, the gap counts as a stall only from
    # when the earliest unanswered request was due.
    for prev, nxt in itertools.pairwise(done):
        while i < len(owed) and owed[i][1] <= prev:
            i += 1
        if i < len(owed):
            due = max(prev, owed[i][0])
            longest = max(longest, nxt - due)
    slow = sum(1 for s, d in owed if d - s > STALL_S)
    return {"over_100ms": slow, "longest_silence_ms": longest * 1e3}
