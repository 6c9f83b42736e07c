"""The benchmark's report: ratios against the same run's baselines, and the verdicts shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.bench.report import markdown, plot, serial_floor_ms


def _lat(p50: float, p99: float, p999: float) -> dict[str, float]:
    return {"count": 100, "p50_ms": p50, "p99_ms": p99, "p99_9_ms": p999, "max_ms": p999}


def _cost(cpu: float) -> dict[str, dict[str, float]]:
    return {
        "ingress": {"cpu_s": cpu, "peak_rss_mib": 50.0, "processes": 1},
        "conversation": {"cpu_s": 2 * cpu, "peak_rss_mib": 60.0, "processes": 1},
    }


def _step(rate: float, sustained: bool, llm: float = 0.0) -> dict[str, Any]:
    return {
        "offered_per_s": rate,
        "llm_s": llm,
        "replies_per_s": rate,
        "completion": 1.0 if sustained else 0.5,
        **_lat(40.0 + llm * 1e3, 90.0 + llm * 1e3, 120.0 + llm * 1e3),
        "p99_first_third_ms": 80.0,
        "p99_last_third_ms": 85.0 if sustained else 900.0,
        "sustained": sustained,
        "accepted": int(rate * 10),
        "per_message": {"consumed": 4.0, "appends": 5.0, "upstream_calls": 3.0},
        "cost": _cost(1.0),
        "accounting": {"lost": 0, "duplicates": 0, "out_of_order": 0},
    }


def results() -> dict[str, Any]:
    return {
        "plan": {"quick": False, "processes": 2, "connections": 64},
        "duration_s": 300.0,
        "machine": {
            "date": "2026-11-21T22:00:00+00:00",
            "cpu": "Test CPU",
            "cores": 2,
            "memory_gib": 24,
            "kernel": "6",
            "python": "3.11",
            "rabbitmq": "3.10",
            "postgresql": "15",
            "loadavg_before": [0.5, 0, 0],
            "loadavg_after": [1.0, 0, 0],
            "machine_cpu_busy": 0.5,
            "cpu_pressure": 0.1,
        },
        "baselines": {
            "loadgen": {"max_per_s": 20000.0, "open_loop": {"offered_per_s": 1000}},
            "http": {
                "max_per_s": 8000.0,
                "unloaded": _lat(0.5, 1.0, 2.0),
                "cpu_s_per_1000": 0.1,
                "at_rate": {"1000": _lat(1.0, 4.0, 8.0)},
            },
            "broker": {
                "per_s": 4000.0,
                "in_flight": 500,
                "unloaded": _lat(1.0, 2.0, 3.0),
                "loaded": _lat(50.0, 100.0, 120.0),
                "client_cpu_s_per_1000": 0.2,
            },
            "broker_hop": {"rate_per_s": 500, "count": 2500, "broker_cpu_ms_per_hop": 0.6},
            "database": {
                "appends_per_s": 2000.0,
                "batched_events_per_s": 30000.0,
                "pool": 10,
                "unloaded": _lat(0.5, 1.0, 2.0),
                "loaded": _lat(10.0, 30.0, 40.0),
                "client_cpu_s_per_1000": 0.3,
            },
        },
        "ingress": {
            "max_per_s": 2000.0,
            "durable": {"accepted": 100, "queued": 100},
            "at_rate": {
                "1000": {
                    **_lat(2.0, 20.0, 40.0),
                    "accepted_per_s": 1000.0,
                    "errors": 0,
                    "send_lag_p99_ms": 1.0,
                }
            },
            "cost": _cost(0.5),
            "cost_messages": 1000,
            "long": {
                **_lat(2.0, 20.0, 40.0),
                "max_ms": 130.0,
                "offered_per_s": 1000.0,
                "duration_s": 60.0,
                "accepted": 60000,
                "errors": 0,
                "over_100ms": 7,
                "longest_silence_ms": 95.0,
            },
        },
        "e2e": {
            "llm_0ms": {
                "steps": [_step(100, True), _step(200, False)],
                "max_sustained_per_s": 100,
                "first_piled_up_per_s": 200,
            },
            "llm_1s": {"steps": [_step(50, True, 1.0)], "max_sustained_per_s": 50},
        },
        "failures": [],
    }


def test_ratios_are_taken_against_the_same_runs_baselines() -> None:
    text = markdown(results())
    # 2,000/s against an 8,000/s HTTP ceiling and a 4,000/s broker ceiling.
    assert "**2,000/s** = 0.25x the HTTP ceiling, 0.50x the broker ceiling" in text
    # Ingress p99 20 ms where the signature-only endpoint had 4 ms at the same rate.
    assert "5.00x" in text
    # 100/s x 4 hops of a 4,000/s broker; x 5 appends of 2,000/s; x 4 requests of 8,000/s.
    assert "10% of the broker ceiling, 25% of the database ceiling and 5% of the HTTP" in text
    # Ingress CPU 0.5 s per 1,000 against 0.1 + 0.2 s.
    assert "0.50 CPU s per 1,000 webhooks = 1.67x" in text


def test_the_machine_floor_multiplies_the_broker_hop_by_the_hops_per_message() -> None:
    text = markdown(results())
    assert "broker CPU 0.60 ms per hop" in text
    # 4 hops x 0.6 ms = 2.4 CPU ms per message = 2.4 cores at 1,000 messages/s.
    assert "RabbitMQ alone needs 2.4 CPU ms per message: 2.4 cores at 1,000" in text
    assert "a machine of 2 cores" in text


def test_serial_floor_adds_the_unloaded_round_trips_and_the_llm() -> None:
    r = results()
    fast, slow = r["e2e"]["llm_0ms"]["steps"][0], r["e2e"]["llm_1s"]["steps"][0]
    # webhook 0.5 + 4 hops x 1.0 + 5 appends x 0.5 + 3 calls x 0.5 (+ the LLM's 1,000 ms).
    assert serial_floor_ms(r, fast) == 0.5 + 4.0 + 2.5 + 1.5
    assert serial_floor_ms(r, slow) == 1008.5


def test_verdicts_and_failures_are_shown() -> None:
    r = results()
    text = markdown(r)
    assert "| 0 ms | 200 |" in text and "| no |" in text
    assert "(no rate tried piled up)" in text  # the 1 s ladder never failed
    assert "no reply lost, duplicated or out of order" in text
    r["failures"] = ["e2e 200/s llm 0s: lost 3, duplicated 0, out of order 0"]
    assert "lost 3" in markdown(r)


def test_plot_is_written(tmp_path: Path) -> None:
    path = tmp_path / "latency.png"
    plot(results(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_peer_is_shown_beside_ours_with_the_ratio() -> None:
    r = results()
    fast = _step(100, True)
    slow = _step(150, False)
    slow["accounting"] = {"lost": 7, "duplicates": 0, "out_of_order": 0}
    fast["p99_ms"] = 30.0  # ours 90 ms at 100/s: 3x the peer's
    fast["cost"] = {"peer": {"cpu_s": 0.5, "peak_rss_mib": 60.0, "processes": 1}}
    fast["cost"]["load generator"] = {"cpu_s": 9.0, "peak_rss_mib": 1.0, "processes": 2}
    r["peer"] = {
        "name": "pywa",
        "llm_0ms": {"steps": [fast, slow], "max_sustained_per_s": 100},
    }
    text = markdown(r)
    # Ours sustained 100/s too: 1x the peer, short of the target.
    assert "ours **100/s**, the peer's **100/s**: **1.00x** (target: at least 2x)" in text
    assert "| 100 | 100.0% | 40.0 | 90.0 | yes | 0 / 0 / 0 | 100.0% | 40.0 | 30.0 |" in text
    assert "| 3.00x |" in text
    # 150/s only the peer ran, and lost 7; 200/s only ours.
    assert "| 150 | - | - | - | - | - | 50.0% |" in text and "| no | 7 / 0 / 0 | - |" in text
    # CPU per message: ours 3 s (ingress 1 + conversation 2) over 1,000 messages; the peer
    # 0.5 s, the load generator not counted.
    assert "ours 3.0 ms over every process" in text and "the peer's 0.5 ms" in text


def test_a_skipped_peer_says_so() -> None:
    r = results()
    r["peer"] = {"skipped": "no .venv-peer"}
    assert "**Against the peer**: skipped (no .venv-peer)." in markdown(r)


def test_webhooks_turned_away_are_counted_with_how_soon() -> None:
    r = results()
    assert "turned away" not in markdown(r)
    r["e2e"]["llm_0ms"]["steps"][1]["ack"] = {"refused_503": 1200, "refused_p99_ms": 1004.0}
    assert "200/s (LLM 0 ms): 1,200, answered p99 1,004 ms after their send time" in markdown(r)


def test_the_ingress_stall_run_is_reported_against_its_target() -> None:
    text = markdown(results())
    assert "Stalls: 1,000/s for 60 s (60,000 acknowledged, 0 errors)" in text
    assert "**130 ms**; **7** acks over 100 ms" in text
    assert "while one was owed: 95.0 ms (target: no stall over 100 ms)" in text
