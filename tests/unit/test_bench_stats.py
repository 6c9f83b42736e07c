"""The benchmark's own arithmetic (tests/bench/stats.py): if it is wrong, every figure is."""

from __future__ import annotations

import math
import random

import pytest

from tests.bench.ceilings import _Trivial
from tests.bench.loadgen import Traffic, message_index
from tests.bench.stats import account, percentile, pile_up, schedule, share, stalls, summary_ms


def test_percentile_is_nearest_rank_on_unsorted_input() -> None:
    values = list(range(1, 101))
    random.Random(7).shuffle(values)
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100
    assert percentile(values, 100) == 100
    assert percentile(values, 1) == 1


def test_percentile_of_few_values_is_a_value_that_happened() -> None:
    # p99.9 of 1,000 samples is the 999th: not the max, not an interpolation.
    values = [float(i) for i in range(1000)]
    assert percentile(values, 99.9) == 998.0
    assert percentile([3.0, 1.0], 50) == 1.0
    assert percentile([3.0], 99.9) == 3.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 0)


def test_summary_is_in_milliseconds() -> None:
    s = summary_ms([0.001] * 98 + [0.5, 2.0])
    assert s["p50_ms"] == pytest.approx(1.0)
    assert s["p99_ms"] == pytest.approx(500.0)
    assert s["p99_9_ms"] == pytest.approx(2000.0)
    assert s["count"] == 100


def test_schedule_is_fixed_in_advance_at_the_rate() -> None:
    times = schedule(4, 2.0, start=10.0)
    assert times == [10.0 + i * 0.25 for i in range(8)]
    assert len(schedule(1000, 15)) == 15_000
    assert schedule(0, 5) == [] and schedule(5, 0) == []


def test_share_splits_by_customer_and_loses_nothing() -> None:
    indexes = range(1000)
    parts = [share(indexes, 3, w, customers=40) for w in range(3)]
    assert sorted(i for p in parts for i in p) == list(indexes)
    for part in parts:
        customers = {i % 40 for i in part}
        others = {i % 40 for p in parts if p is not part for i in p}
        assert not customers & others  # a customer's messages all go through one worker


def test_accounting_counts_lost_duplicated_and_out_of_order() -> None:
    accepted = {"a": ["1", "2", "3"], "b": ["4", "5"]}
    replies = [("a", "1"), ("b", "5"), ("a", "3"), ("a", "2"), ("b", "4"), ("a", "3")]
    result = account(accepted, replies)
    assert result.lost == 0
    assert result.duplicates == 1  # the second reply to 3
    # a: 1, 3, then 2 (after 3); b: 5 then 4.
    assert result.out_of_order == 2
    assert result.answered == 5


def test_accounting_follows_the_inbox_order_and_ignores_unacknowledged() -> None:
    # Ingress recorded b's messages in the order 5, 4 (they crossed on the way in), and 6
    # timed out at the generator but was stored and answered: neither is an error.
    accepted = {"a": ["1", "2"], "b": ["4", "5"]}
    replies = [("a", "1"), ("b", "5"), ("b", "4"), ("b", "6")]
    result = account(
        accepted, replies, inbox_order={"a": ["1", "2"], "b": ["5", "4", "6"]}, unacknowledged=["6"]
    )
    assert result.out_of_order == 0
    assert result.duplicates == 0
    assert result.lost == 1 and result.lost_ids == ["2"]
    assert result.unacknowledged_answered == 1


def test_pile_up_accepts_a_steady_run() -> None:
    rng = random.Random(1)
    scheduled = [i / 100 for i in range(1500)]
    latencies = [0.02 + rng.random() * 0.01 for _ in scheduled]
    verdict = pile_up(scheduled, latencies, len(scheduled), errors=0, deadline=scheduled[-1] + 2)
    assert verdict.sustained, verdict.reasons
    assert verdict.completion == 1.0


def test_pile_up_detects_a_growing_backlog_even_when_all_is_answered() -> None:
    # Served at 80/s while offered 100/s: each message waits a little longer than the last.
    scheduled = [i / 100 for i in range(1500)]
    latencies = [0.02 + i * (1 / 80 - 1 / 100) for i in range(1500)]
    verdict = pile_up(scheduled, latencies, 1500, errors=0, deadline=scheduled[-1] + 10)
    assert not verdict.sustained
    assert any("p99 grew" in r for r in verdict.reasons)


def test_pile_up_counts_late_and_missing_replies_and_errors() -> None:
    scheduled = [i / 10 for i in range(100)]
    latencies: list[float | None] = [0.05] * 100
    latencies[10] = None  # never answered
    latencies[50] = 30.0  # answered long after the deadline
    late = pile_up(scheduled, latencies, 100, errors=0, deadline=scheduled[-1] + 2)
    assert late.completion == pytest.approx(0.98)
    assert late.sustained  # 98% is enough
    latencies[20] = None
    worse = pile_up(scheduled, latencies, 100, errors=0, deadline=scheduled[-1] + 2)
    assert not worse.sustained and worse.completion == pytest.approx(0.97)
    refused = pile_up(scheduled, [0.05] * 100, 100, errors=1, deadline=scheduled[-1] + 2)
    assert not refused.sustained


def test_traffic_names_each_message_so_its_reply_can_be_matched() -> None:
    traffic = Traffic("text", tag="s7", prefix="49007", customers=10)
    body = traffic.body(23)
    assert b'"s7 23"' in body and b"wamid.s7.23" in body
    assert traffic.customer(23) == traffic.customer(3) == "490070000003"
    assert message_index("s7", "echo: s7 23") == 23
    assert message_index("s7", "echo: s70 23") is None
    assert message_index("s7", "You said: s7 23") is None


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_trivial_server_answers_each_request_once_however_it_is_split() -> None:
    proto = _Trivial()
    transport = _Transport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    body = b'{"a": 1}'
    request = (
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    stream = request * 3
    proto.data_received(stream[:10])
    proto.data_received(stream[10 : len(request) + 5])  # the first whole, then a part
    assert len(transport.written) == 1
    proto.data_received(stream[len(request) + 5 :])
    assert len(transport.written) == 3
    assert all(w.startswith(b"HTTP/1.1 200 OK") for w in transport.written)


def test_a_stall_is_the_longest_silence_while_an_answer_was_owed() -> None:
    # Requests due every 10 ms, each answered 2 ms later, except that nothing comes back
    # between 0.052 and 0.300: the requests due meanwhile are answered together at 0.300.
    scheduled = [i * 0.01 for i in range(40)]
    done = [s + 0.002 if not 0.05 < s < 0.3 else 0.3 for s in scheduled]
    figures = stalls({"scheduled": scheduled, "done": done})
    # From 0.06 (the first owed answer's due time, after the last one at 0.052) to 0.3.
    assert abs(figures["longest_silence_ms"] - 240) < 1e-6
    assert figures["over_100ms"] == sum(1 for s in scheduled if 0.05 < s < 0.2)


def test_an_idle_gap_with_nothing_owed_is_no_stall() -> None:
    # Two bursts a second apart, every answer quick: the second apart is not a stall.
    scheduled = [0.0, 0.001, 1.0, 1.001]
    done = [s + 0.003 for s in scheduled]
    figures = stalls({"scheduled": scheduled, "done": done})
    assert figures["longest_silence_ms"] < 4 and figures["over_100ms"] == 0
