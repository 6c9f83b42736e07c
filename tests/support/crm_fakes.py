"""A business's CRM receiving the relay's webhooks: a real HTTP server on loopback.

It answers 200 unless a fault says otherwise (500, 429 with Retry-After, 410, a hang past the
relay's timeout, a dropped connection), and it can go down and come back on the same port,
like a CRM that is unreachable for a while.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.support.fakes import FakeServer, RecordedRequest


class FakeCRM(FakeServer):
    name = "fake-crm"
    path = "/hooks/whatsapp"

    def __init__(self) -> None:
        super().__init__()
        self._port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._port}{self.path}"

    async def _open(self) -> int:
        # The base binds any free port; a CRM coming back must come back where it was.
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port, reuse_address=True)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self._port

    def go_down(self) -> None:
        """Connection refused from now on (requests and faults are kept)."""
        self.stop()

    def come_back(self) -> None:
        self.start()

    def handle(self, rec: RecordedRequest) -> web.StreamResponse:
        return web.Response(status=200, text="ok")

    # --- what it received ------------------------------------------------------------------

    def webhooks(self) -> list[RecordedRequest]:
        """Every webhook POST, answered or not, in arrival order."""
        return self.requests_matching(lambda r: r.method == "POST" and r.path == self.path)

    def accepted(self) -> list[RecordedRequest]:
        """The webhooks it answered 2xx (faults with a status are the non-2xx ones; a hang
        past the relay's timeout counts here too, so tests check the relay's records)."""
        return [r for r in self.webhooks() if not r.fault]

    def events(self, conversation: str | None = None) -> list[dict[str, Any]]:
        """Bodies of accepted webhooks (optionally of one conversation), in arrival order."""
        out = []
        for rec in self.accepted():
            body = json.loads(rec.body)
            if conversation is None or body["data"].get("conversation_id") == conversation:
                out.append(body)
        return out

    def by_webhook_id(self, webhook_id: str) -> list[RecordedRequest]:
        return [r for r in self.webhooks() if r.headers.get("webhook-id") == webhook_id]
