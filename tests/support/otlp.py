"""A fake OpenTelemetry collector: a real OTLP/HTTP endpoint (protobuf) that keeps the spans
every service exports, so a test can follow one customer message across processes."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.fakes import FakeServer, RecordedRequest

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, object]


class FakeOTLPCollector(FakeServer):
    name = "fake-otlp"

    def _reset_state(self) -> None:
        self.spans: list[ExportedSpan] = []

    def __init__(self) -> None:
        super().__init__()
        self._reset_state()

    def handle(self, rec: RecordedRequest) -> web.StreamResponse:
        if rec.method != "POST" or not rec.path.endswith("/v1/traces"):
            return web.Response(status=404)
        request = ExportTraceServiceRequest()
        request.ParseFromString(rec.body)
        for resource_spans in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    attributes: dict[str, object] = {}
                    for a in s.attributes:
                        v = a.value
                        attributes[a.key] = (
                            v.string_value or v.int_value or v.bool_value or v.double_value
                        )
                    self.spans.append(
                        ExportedSpan(
                            service=service,
                            name=s.name,
                            kind=KINDS.get(s.kind, str(s.kind)),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            attributes=attributes,
                        )
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def trace(self, trace_id: str) -> list[ExportedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]
