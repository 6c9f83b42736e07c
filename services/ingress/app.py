"""The webhook endpoint. No database, no LLM on the request path: verify, publish, answer."""

from __future__ import annotations

import base64
import hmac
import logging
import time
import uuid

import msgspec
from aiohttp import web
from opentelemetry.trace import SpanKind

from services.ingress.routing import routing_key
from services.ingress.signature import is_valid
from shared.broker.bus import Bus
from shared.config import Settings
from shared.observability import metrics, tracing
from shared.schemas import WebhookDelivery

log = logging.getLogger("ingress")
_decode = msgspec.json.Decoder().decode

BUS = web.AppKey("bus", Bus)
SETTINGS = web.AppKey("settings", Settings)


async def verify_subscription(request: web.Request) -> web.Response:
    """Meta's setup handshake: echo hub.challenge when the verify token matches."""
    settings = request.app[SETTINGS]
    q = request.query
    token = q.get("hub.verify_token", "")
    if (
        q.get("hub.mode") == "subscribe"
        and settings.whatsapp_verify_token
        and hmac.compare_digest(token.encode(), settings.whatsapp_verify_token.encode())
    ):
        return web.Response(text=q.get("hub.challenge", ""))
    return web.Response(status=403, text="verification failed")


async def receive(request: web.Request) -> web.Response:
    # Each delivery starts a trace that follows its messages through every service.
    with tracing.new_trace_root(), tracing.span("POST /webhook", SpanKind.SERVER) as current:
        response = await _receive(request)
        current.set_attribute("http.response.status_code", response.status)
        return response


async def _receive(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    received_at = time.time()
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.webhooks_received.labels("too_large").inc()
        return web.Response(status=413, text=f"body over {settings.max_body_bytes} bytes")
    if not is_valid(settings.whatsapp_app_secret, body, request.headers.get("X-Hub-Signature-256")):
        metrics.webhooks_received.labels("bad_signature").inc()
        return web.Response(status=401, text="missing or invalid X-Hub-Signature-256")

    delivery_id = uuid.uuid4().hex
    try:
        payload = _decode(body)
        text = body.decode("utf-8")
        if not isinstance(payload, dict):
            raise ValueError("top level is not a JSON object")
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
        # Signed, so it came from Meta: keep it for inspection, but tell Meta it is bad.
        delivery = WebhookDelivery(
            delivery_id=delivery_id,
            received_at=received_at,
            body=base64.b64encode(body).decode(),
            valid_json=False,
        )
        if not await _publish(request.app[BUS], "malformed", delivery):
            return _unavailable()
        metrics.webhooks_received.labels("malformed").inc()
        return web.Response(status=400, text=f"malformed JSON body: {exc}")

    delivery = WebhookDelivery(delivery_id=delivery_id, received_at=received_at, body=text)
    if not await _publish(request.app[BUS], routing_key(payload), delivery):
        return _unavailable()
    metrics.webhooks_received.labels("accepted").inc()
    return web.Response(text="ok")


def _unavailable() -> web.Response:
    metrics.webhooks_received.labels("unavailable").inc()
    # 503 makes Meta retry later: never 200 for a delivery that might be lost.
    return web.Response(status=503, text="cannot store the delivery now; retry later")


async def _publish(bus: Bus, key: str, delivery: WebhookDelivery) -> bool:
    try:
        await bus.publish(
            "dedup",
            key,
            delivery,
            headers={
                "x-delivery-id": delivery.delivery_id,
                "x-correlation-id": delivery.delivery_id,
            },
        )
    except Exception as exc:
        log.error("delivery not stored", extra={"fields": {"error": f"{type(exc).__name__}"}})
        return False
    return True


def create_app(settings: Settings, bus: Bus) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[BUS] = bus
    app.router.add_get("/webhook", verify_subscription)
    app.router.add_post("/webhook", receive)
    return app
