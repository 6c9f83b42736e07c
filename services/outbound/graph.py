"""The Graph API client and what Meta's error codes mean."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.crypto.erased import address
from shared.directory import Number
from shared.errors import PermanentError, RetryLater
from shared.resilience import UpstreamError, Upstreams, retry_after_seconds

# Slow down and retry: account throughput, and the pair rate limit (that customer only).
THROTTLED = {130429: 1.0, 131056: 6.0, 80007: 5.0, 4: 5.0}
# The access token expired or was revoked: wait for the operator, do not fail the replies.
AUTH = {190}
NAMES = {
    130429: "throughput_limit",
    131056: "pair_rate_limit",
    131047: "re_engagement_window",
    131026: "undeliverable",
    131000: "generic_error",
    131053: "media_upload_error",
    100: "invalid_parameter",
    190: "access_token_expired",
    131051: "unsupported_type",
}


@dataclass
class PermanentSendError(PermanentError):
    """Meta refused this message for good (131047 window closed, bad recipient, ...)."""

    status: int
    code: int | None
    title: str

    def __str__(self) -> str:
        return f"{self.status} code={self.code} {self.title}"


def meta_error(body: Any) -> tuple[int | None, str]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = err.get("code")
        return (
            int(code) if isinstance(code, int | str) and str(code).isdigit() else None,
            str(err.get("message") or err.get("error_user_title") or ""),
        )
    return None, str(body)[:200]


def classify(status: int, body: Any, headers: Any) -> None:
    """Raise what the runtime should do with a failed answer; return on success."""
    if status < 400:
        return
    code, title = meta_error(body)
    if code in THROTTLED or status == 429:
        delay = THROTTLED.get(code or 0, 1.0)
        raise RetryLater(
            f"graph throttled (code {code})", retry_after_seconds(headers, delay) or delay
        )
    if code in AUTH or status == 401:
        raise RetryLater(f"graph rejected the access token (code {code})", 30.0)
    if status >= 500:
        raise UpstreamError("whatsapp", status, body, transient=True)
    raise PermanentSendError(status, code, title)


def addressed(to: str) -> dict[str, str]:
    """A wa_id (digits) goes in `to`; a business-scoped user id, for a customer who hides
    their number, in `recipient` (platform-facts, identity). A customer's key may carry the
    epoch of an earlier erasure (`<id>~<n>`): Meta knows the id before it."""
    to = address(to)
    return {"to": to} if to.isdigit() else {"recipient": to}


class GraphClient:
    """The Graph API's messages endpoint, with each number's own token and breaker."""

    def __init__(self, upstreams: Upstreams, base_url: str) -> None:
        self.upstreams = upstreams
        self.base_url = base_url.rstrip("/")

    async def send(self, number: Number, to: str, payload: dict[str, Any]) -> str:
        """Send a message; returns the wamid Meta assigned."""
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            **addressed(to),
            **payload,
        }
        answer = await self.upstreams(number.phone_number_id).request(
            "POST",
            f"{self.base_url}/{number.phone_number_id}/messages",
            classify=classify,
            json=body,
            headers=_auth(number),
        )
        return str(answer["messages"][0]["id"])

    async def mark_read(self, number: Number, wamid: str, typing: bool = True) -> None:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": wamid,
        }
        if typing:
            body["typing_indicator"] = {"type": "text"}
        # One try: a read mark is cosmetic and must not hold back the reply behind it.
        await self.upstreams(number.phone_number_id).request(
            "POST",
            f"{self.base_url}/{number.phone_number_id}/messages",
            classify=classify,
            tries=1,
            json=body,
            headers=_auth(number),
        )


def _auth(number: Number) -> dict[str, str]:
    return {"Authorization": f"Bearer {number.access_token}"}
