"""The api's client of the webhook relay's admin API, which serves `/v1/webhooks` (decision
0008): the relay stays the one owner of its endpoints, deliveries and their tables, and the
api asks it over HTTP, with the platform token and every request scoped to the caller's
business (`X-Business-Id`), so that the relay itself refuses another business's ids.

The relay's answers become the api's: 404 (the same words whether the id does not exist or
is another business's), 409, 422 naming the field; the relay away, a standby, or refusing the
token is a 503. Bodies are never logged: they may hold a secret."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import aiohttp

from services.api.errors import ApiError, conflict, invalid, not_found, unavailable

log = logging.getLogger("api.relay")
TIMEOUT = 30.0  # replay-since reads the event store for its period: the longest call
SCOPE_HEADER = "X-Business-Id"


def segment(value: str) -> str:
    """A path id as one URL path segment (the api's ids are checked already)."""
    return quote(value, safe="")


class RelayClient:
    def __init__(self, base_url: str, token: str, timeout: float = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self,
        business_id: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
        what: str = "resource",
        actor: tuple[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """The relay's status and body for a 2xx; any other answer raises the api's.
        `actor`: (key id, role), recorded as the actor of the events a change writes."""
        if not self.token:
            raise unavailable("webhooks are unavailable: ADMIN_TOKEN is not set")
        if not business_id:  # never unscoped: the token alone sees every business
            raise not_found(what)
        headers = {"Authorization": f"Bearer {self.token}", SCOPE_HEADER: business_id}
        if actor is not None:
            headers |= {"X-Actor": actor[0], "X-Actor-Role": actor[1]}
        try:
            async with self._http().request(
                method,
                self.base_url + "/admin" + path,
                json=body,
                params=query,
                headers=headers,
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("relay unreachable", extra={"fields": {"error": type(exc).__name__}})
            raise unavailable("the webhook relay is unreachable") from None
        if status < 300:
            return status, raw
        raise _refusal(status, raw, what)


def _refusal(status: int, raw: bytes, what: str) -> ApiError:
    try:
        answer = json.loads(raw)
        message = str(answer.get("error", ""))[:300]
        field = str(answer.get("field") or "")
    except (ValueError, AttributeError):
        message, field = "", ""
    if status == 404:
        return not_found(what)
    if status == 409:
        return conflict("conflict", message or "changed meanwhile; read it and try again")
    if status == 422:
        return invalid(field, message or "refused")
    # 401 (the relay has another ADMIN_TOKEN), 503 (a standby, its database away), a 500.
    log.warning("relay refused", extra={"fields": {"status": status}})
    return unavailable("the webhook relay is unavailable; try again")
