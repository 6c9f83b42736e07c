"""Composition root of ingress: `python -m services.ingress`."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from services.ingress.app import create_app
from shared.broker.bus import Bus
from shared.config import load_settings
from shared.observability.logging import configure_logging
from shared.observability.tracing import configure_tracing, shutdown_tracing
from shared.runtime import connect_with_retry, run_process, serve, wait_for_signal

log = logging.getLogger("ingress")


async def main() -> None:
    settings = load_settings()
    if not settings.whatsapp_app_secret:
        # Never run without verifying signatures.
        log.error("WHATSAPP_APP_SECRET is not set; refusing to start")
        sys.exit(2)
    bus = Bus(settings)
    await connect_with_retry("broker", bus.connect)
    app = create_app(settings, bus)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(
            status=200 if bus.ready else 503, text="ok" if bus.ready else "broker unreachable"
        )

    from shared.runtime import metrics_view

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    runner = await serve(app, settings.ingress_port)
    log.info("started", extra={"fields": {"port": settings.ingress_port}})
    await wait_for_signal()
    await runner.cleanup()
    await bus.close()
    shutdown_tracing()


if __name__ == "__main__":
    configure_logging("ingress", load_settings().log_level)
    configure_tracing("ingress")
    run_process(main())
