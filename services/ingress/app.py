"""The webhook endpoint. No database, no LLM on the request path: verify, publish, answer.

A delivery is accepted when the secret of a registered Meta app signed it (the directory's
copy in memory; reloaded from the database, at most a few times a second, when a signature
matches none, so that an app registered a moment ago is known). Which app signed it goes to
dedup, which checks that app owns the number the delivery names."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
import uuid

from aiohttp import web
from opentelemetry.trace import SpanKind

from services.ingress.routing import routing_key
from shared.broker.bus import Bus
from shared.config import Settings
from shared.directory import Directory
from shared.meta.signature import signed_by
from shared.observability import metrics, tracing
from shared.schemas import WebhookDelivery
from shared.web import HttpError, parse_json, read_body

log = logging.getLogger("ingress")

BUS = web.AppKey("bus", Bus)
SETTINGS = web.AppKey("settings", Settings)
DIRECTORY = web.AppKey("directory", Directory)
LAST_RELOAD = web.AppKey("last_reload", list)
IN_FLIGHT = web.AppKey("in_flight", list)  # [deliveries waiting on the broker's confirm]
RELOAD_EVERY = 0.25  # seconds between reloads asked for by signatures matching no secret
# Meta's payloads nest about 10 deep; anything near msgspec's recursion limit (about 1,000,
# less the stack already in use) is not Meta's shape, and is quarantined unparsed.
MAX_JSON_DEPTH = 64
# Meta's challenge is a number; echoing anything else would let a crafted link make us
# serve a page of someone else's choosing.
_CHALLENGE = re.compile(r"[0-9]{1,64}")


async def verify_subscription(request: web.Request) -> web.Response:
    """Meta's setup handshake: echo hub.challenge when the verify token matches."""
    q = request.query
    token = q.get("hub.verify_token", "").encode("utf-8", "surrogateescape")
    # Every registered verify token is tried, so timing does not say which one matched.
    matches = [
        hmac.compare_digest(token, known.encode())
        for known in request.app[DIRECTORY].verify_tokens()
    ]
    if not (q.get("hub.mode") == "subscribe" and any(matches)):
        raise HttpError(403, "forbidden", "verification failed", "hub.verify_token")
    challenge = q.get("hub.challenge", "")
    if not _CHALLENGE.fullmatch(challenge):
        raise HttpError(400, "validation_failed", "hub.challenge must be digits", "hub.challenge")
    return web.Response(text=challenge, content_type="text/plain")


async def receive(request: web.Request) -> web.Response:
    # Each delivery starts a trace that follows its messages through every service.
    with tracing.new_trace_root(), tracing.span("POST /webhook", SpanKind.SERVER) as current:
        try:
            response = await _receive(request)
        except HttpError as exc:
            current.set_attribute("http.response.status_code", exc.status)
            raise
        current.set_attribute("http.response.status_code", response.status)
        return response


async def _receive(request: web.Request) -> web.Response:
    received_at = time.time()
    try:
        body = await read_body(request)
    except HttpError as exc:
        if exc.status == 413:
            metrics.webhooks_received.labels("too_large").inc()
        raise
    app = await _signed_by(request.app, body, request.headers.get("X-Hub-Signature-256"))
    if app is None:
        metrics.webhooks_received.labels("bad_signature").inc()
        raise HttpError(
            401, "unauthorized", "missing or invalid X-Hub-Signature-256", "X-Hub-Signature-256"
        )

    try:
        payload = parse_json(body, max_depth=MAX_JSON_DEPTH)
        if not isinstance(payload, dict):
            raise HttpError(422, "validation_failed", "the top level is not a JSON object", "body")
        text = body.decode("utf-8")  # parse_json has checked it is UTF-8
    except HttpError as exc:
        return await _quarantine(request.app, body, received_at, app, exc.message)

    delivery = WebhookDelivery(
        delivery_id=uuid.uuid4().hex, received_at=received_at, body=text, app=app
    )
    key = routing_key(payload)
    transit = request.app[BUS].transit
    # The payload's ids are the number and the sender's: never a routing key in clear.
    if not await _publish(request.app, transit.route(key) if transit else key, delivery):
        raise _unavailable()
    metrics.webhooks_received.labels("accepted").inc()
    return web.Response(text="ok")


async def _quarantine(
    web_app: web.Application, body: bytes, received_at: float, app: str, reason: str
) -> web.Response:
    """Signed, so it is Meta's: kept byte for byte, and answered 200 once kept. A 4xx would
    make Meta retry it for days. Its id is the body's sha256, so every retry of the same
    body names the same delivery, and dedup keeps one copy (its event id derives from it)."""
    delivery = WebhookDelivery(
        delivery_id=hashlib.sha256(body).hexdigest(),
        received_at=received_at,
        body=base64.b64encode(body).decode(),
        valid_json=False,
        app=app,
    )
    if not await _publish(web_app, "malformed", delivery):
        raise _unavailable()
    metrics.webhooks_received.labels("malformed").inc()
    log.warning(
        "malformed delivery quarantined",
        extra={"fields": {"delivery_id": delivery.delivery_id, "reason": reason[:200]}},
    )
    return web.Response(text="ok")


async def _signed_by(app: web.Application, body: bytes, header: str | None) -> str | None:
    directory = app[DIRECTORY]
    found = signed_by(((a.app, a.secret) for a in directory.app_secrets()), body, header)
    if found is None and directory.pool is not None:
        now = time.monotonic()
        if now - app[LAST_RELOAD][0] >= RELOAD_EVERY:
            app[LAST_RELOAD][0] = now
            try:
                await directory.reload()
            except Exception as exc:  # the database away: the copy we have stands
                log.warning(
                    "directory not reloaded", extra={"fields": {"error": type(exc).__name__}}
                )
            else:
                found = signed_by(
                    ((a.app, a.secret) for a in directory.app_secrets()), body, header
                )
    return found


def _unavailable() -> HttpError:
    metrics.webhooks_received.labels("unavailable").inc()
    # 503 makes Meta retry later: never 200 for a delivery that might be lost.
    return HttpError(
        503,
        "unavailable",
        "cannot store the delivery now; retry later",
        headers={"Retry-After": "1"},
    )


async def _publish(app: web.Application, key: str, delivery: WebhookDelivery) -> bool:
    """True once the broker confirmed the delivery. False at once when too many wait on the
    broker already, or after INGRESS_PUBLISH_TIMEOUT: an overloaded broker turns Meta away
    quickly (it retries later) instead of holding its connections for seconds."""
    settings, in_flight = app[SETTINGS], app[IN_FLIGHT]
    if in_flight[0] >= settings.ingress_max_in_flight:
        log.warning("delivery refused: too many waiting on the broker")
        return False
    in_flight[0] += 1
    try:
        await app[BUS].publish(
            "dedup",
            key,
            delivery,
            headers={
                "x-delivery-id": delivery.delivery_id,
                "x-correlation-id": delivery.delivery_id,
            },
            confirm_within=settings.ingress_publish_timeout,
        )
    except Exception as exc:
        log.error("delivery not stored", extra={"fields": {"error": f"{type(exc).__name__}"}})
        return False
    finally:
        in_flight[0] -= 1
    return True


def create_app(settings: Settings, bus: Bus, directory: Directory) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[BUS] = bus
    app[DIRECTORY] = directory
    app[LAST_RELOAD] = [0.0]
    app[IN_FLIGHT] = [0]
    app.router.add_get("/webhook", verify_subscription)
    app.router.add_post("/webhook", receive)
    return app
