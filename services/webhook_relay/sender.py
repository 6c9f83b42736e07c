"""One delivery attempt over HTTP: sign, POST, classify. Never raises for what the endpoint
answers; every answer (or its absence) becomes an `Outcome`.

The URL is parsed once, by the policy, and the resulting `yarl.URL` is what aiohttp gets: the
host checked is the host connected to. The session's connector resolves names through
`SafeResolver` (the address connected to is the one just checked) and makes its sockets
through `guarded_socket_factory` (each address is checked again right before `connect()`).
Redirects are not followed (a 3xx is a failure, and following it could lead anywhere).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import aiohttp
from aiohttp.abc import AbstractResolver

from services.webhook_relay.domain import Endpoint
from services.webhook_relay.schedule import Outcome, parse_retry_after
from services.webhook_relay.signing import signature_header
from services.webhook_relay.ssrf import (
    SafeResolver,
    UnsafeUrl,
    UrlPolicy,
    guarded_socket_factory,
    unsafe_cause,
)

USER_AGENT = "whatsapp-bot-webhook-relay/1"
ERROR_EXCERPT = 300


def make_session(policy: UrlPolicy, dns: AbstractResolver | None = None) -> aiohttp.ClientSession:
    """`dns`: the resolver asked before the policy checks its answers (tests pass a table)."""
    connector = aiohttp.TCPConnector(
        resolver=SafeResolver(policy, dns),
        socket_factory=guarded_socket_factory(policy),
        use_dns_cache=False,  # every new connection resolves and checks again
        limit=0,  # concurrency is bounded per endpoint by the dispatcher, not here
        limit_per_host=0,
    )
    return aiohttp.ClientSession(connector=connector, trust_env=False)


class Sender:
    """Posts one delivery; `send` never raises for anything the endpoint or its URL does."""

    def __init__(self, session: aiohttp.ClientSession, policy: UrlPolicy, timeout: float) -> None:
        self.session = session
        self.policy = policy
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._timeout_s = timeout

    async def send(
        self, endpoint: Endpoint, delivery_id: str, body: str, now: datetime | None = None
    ) -> Outcome:
        started = time.perf_counter()
        moment = now or datetime.now(UTC)
        try:
            # The form, scheme and literal-address checks; names are checked by the resolver.
            target = self.policy.check_url(endpoint.url)
        except UnsafeUrl as exc:
            return Outcome(None, f"refused: {exc}")
        raw = body.encode()
        timestamp = int(moment.timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                endpoint.signing_secrets(moment), delivery_id, timestamp, raw
            ),
        }
        try:
            async with self.session.post(
                target.url,  # the parsed URL that was checked, not the text again
                data=raw,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            ) as resp:
                excerpt = await resp.content.read(ERROR_EXCERPT)
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except TimeoutError:
            return Outcome(None, f"timeout after {self._timeout_s:g}s", None, _since(started))
        except aiohttp.ClientConnectorError as exc:
            refused = unsafe_cause(exc)
            if refused is not None:
                return Outcome(None, f"refused: {refused}", None, _since(started))
            return Outcome(None, f"connection failed: {exc.os_error}", None, _since(started))
        except aiohttp.ClientError as exc:
            return Outcome(
                None, f"{type(exc).__name__}: {exc}"[:ERROR_EXCERPT], None, _since(started)
            )
        error = ""
        if not 200 <= status < 300:
            text = excerpt.decode("utf-8", "replace").strip()
            error = f"HTTP {status}" + (f": {text}" if text else "")
        return Outcome(status, error[:ERROR_EXCERPT], retry_after, _since(started))


def _since(started: float) -> float:
    return time.perf_counter() - started
