"""OpenTelemetry tracing: one trace per customer message, across every service.

The W3C trace context travels in AMQP headers (`traceparent`) and in each event's metadata.
Spans are exported with OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise
the API's no-op tracer is used, which still carries the incoming context forward, so logs and
events keep their trace id at no measurable cost.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

tracer = trace.get_tracer("whatsapp-bot")
_enabled = False


def configure_tracing(service: str) -> bool:
    """Install the SDK with an OTLP exporter when an endpoint is configured."""
    global _enabled
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") and not os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _enabled = True
    return True


def shutdown_tracing() -> None:
    """Flush what is buffered (on a clean stop; a SIGKILL loses at most one batch)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


def inject(headers: dict[str, Any]) -> dict[str, Any]:
    """Write the current trace context into a carrier (AMQP headers, event metadata)."""
    if not _enabled:
        # What the W3C propagator would write, without its machinery on every publish.
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            headers["traceparent"] = (
                f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
            )
            if ctx.trace_state:
                headers["tracestate"] = ctx.trace_state.to_header()
        return headers
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    headers.update(carrier)
    return headers


def current_traceparent() -> str | None:
    return inject({}).get("traceparent")


@contextlib.contextmanager
def continue_trace(headers: Mapping[str, Any]) -> Iterator[None]:
    """Make the trace context carried in `headers` the current one."""
    carrier = {k: str(headers[k]) for k in ("traceparent", "tracestate") if k in headers}
    token = otel_context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextlib.contextmanager
def new_trace_root() -> Iterator[None]:
    """Where a customer message enters (ingress). With tracing off, still start a trace id
    so logs and events of one delivery can be found together."""
    if _enabled:
        yield
        return
    root = SpanContext(
        trace_id=secrets.randbits(128) or 1,
        span_id=secrets.randbits(64) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(root)))
    try:
        yield
    finally:
        otel_context.detach(token)


class _NoSpan:
    """span() with no exporter configured. The API's no-op tracer would make a
    non-recording span with the caller's context, make it current and put it back: the
    same trace id and parent travel on without it, and it cost each publish and each
    delivery a generator, an attributes dict and two context switches."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return trace.INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()


def span(name: str, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> Any:
    """A span as a context manager; attributes must never carry a phone number or text."""
    if not _enabled:
        return _NO_SPAN
    return tracer.start_as_current_span(name, kind=kind, attributes=attributes or None)


def trace_ids() -> tuple[str, str] | None:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def record_error(current: Span, exc: BaseException) -> None:
    current.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
