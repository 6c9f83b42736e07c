"""The Graph API as the api calls it: the template endpoints (`GET /{waba_id}/
message_templates`, every page, following `paging.next`'s cursor, and `POST` to create one;
each WABA read with the token of one of its numbers) and media uploads (`POST
/{phone_number_id}/media`, a person's attachment). Outbound stays the only caller of the
messages endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

PAGE = 100  # templates per page asked for (Meta's lists page at 25 unless told)
MAX_PAGES = 100  # 10,000 templates per WABA: far above Meta's own cap of 250 per WABA
FIELDS = "id,name,language,category,status,parameter_format,components,quality_score"
# Meta's answers to too many creations: the WABA's hourly cap, and the app's rate limits.
CAPPED = {80008, 4, 32, 613}


@dataclass
class MetaRefused(Exception):
    status: int
    code: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.status} code={self.code} {self.message}"


class MetaUnreachable(Exception):
    """A network error, a timeout or a 5xx: nothing the client sent."""


class GraphClient:
    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def _call(self, method: str, url: str, token: str, **kw: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as session,
                session.request(method, url, headers=headers, **kw) as resp,
            ):
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise MetaUnreachable(type(exc).__name__) from exc
        if status >= 500:
            raise MetaUnreachable(f"HTTP {status}")
        if status >= 400 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            error = error if isinstance(error, dict) else {}
            code = error.get("code")
            raise MetaRefused(
                status,
                int(code) if isinstance(code, int) else None,
                str(error.get("message") or "refused")[:300],
            )
        return body

    @classmethod
    def of(cls, settings: Any) -> GraphClient:
        return cls(settings.whatsapp_api_url, settings.whatsapp_timeout)

    async def upload_media(self, phone_number_id: str, token: str, data: bytes, mime: str) -> str:
        """`POST /{phone_number_id}/media` (multipart): the media id to send the file by."""
        form = aiohttp.FormData()
        form.add_field("messaging_product", "whatsapp")
        form.add_field("type", mime)
        form.add_field("file", data, filename="upload", content_type=mime)
        body = await self._call(
            "POST", f"{self.base_url}/{phone_number_id}/media", token, data=form
        )
        if not body.get("id"):
            raise MetaUnreachable("no media id in Meta's answer")
        return str(body["id"])

    async def list_all(self, waba_id: str, token: str) -> list[dict[str, Any]]:
        """Every template of the WABA, all pages."""
        out: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": str(PAGE), "fields": FIELDS}
        for _ in range(MAX_PAGES):
            body = await self._call(
                "GET", f"{self.base_url}/{waba_id}/message_templates", token, params=params
            )
            out += [t for t in body.get("data") or [] if isinstance(t, dict)]
            paging = body.get("paging") if isinstance(body.get("paging"), dict) else {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                break
            params = {**params, "after": str(after)}
        return out

    async def create(self, waba_id: str, token: str, template: dict[str, Any]) -> dict[str, Any]:
        return await self._call(
            "POST", f"{self.base_url}/{waba_id}/message_templates", token, json=template
        )
