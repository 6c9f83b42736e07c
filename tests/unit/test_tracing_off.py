"""With no exporter configured, spans are not made, yet a delivery's trace id still travels:
ingress starts one, every publish carries it, every consumer continues it."""

from __future__ import annotations

import re

from shared.observability import tracing


def test_a_new_root_gives_each_delivery_its_own_trace_id_that_publishes_carry() -> None:
    seen = set()
    for _ in range(3):
        with tracing.new_trace_root(), tracing.span("POST /webhook") as current:
            current.set_attribute("http.response.status_code", 200)  # a no-op, not an error
            headers = tracing.inject({"x-other": 1})
            assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", headers["traceparent"])
            assert headers["x-other"] == 1
            ids = tracing.trace_ids()
            assert ids is not None and headers["traceparent"].split("-")[1] == ids[0]
            seen.add(ids[0])
    assert len(seen) == 3
    assert tracing.inject({}) == {}  # outside any trace: nothing to carry
    assert tracing.current_traceparent() is None


def test_a_consumer_continues_the_trace_its_delivery_carried() -> None:
    carried = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    with tracing.continue_trace({"traceparent": carried, "x-attempt": 2}):
        with tracing.span("dedup process"):
            assert tracing.current_traceparent() == carried
            assert tracing.trace_ids() == ("ab" * 16, "cd" * 8)
    assert tracing.trace_ids() is None


def test_an_error_inside_a_span_still_propagates() -> None:
    try:
        with tracing.span("publish") as current:
            tracing.record_error(current, ValueError("x"))
            raise ValueError("x")
    except ValueError:
        pass
    else:
        raise AssertionError("the span swallowed the error")
