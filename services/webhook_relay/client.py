"""A small synchronous client of the relay's admin API (used by the CLI and the tests)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class AdminClient:
    def __init__(
        self, base_url: str, token: str, timeout: float = 30.0, business: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.business = business  # scope every request to this business (X-Business-Id)

    def request(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.business is not None:
            headers["X-Business-Id"] = self.business
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                message = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                message = text
            raise AdminError(exc.code, message) from None
        return json.loads(raw) if raw else None

    def create_endpoint(
        self,
        url: str,
        event_types: list[str] | None = None,
        description: str = "",
        secret: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"url": url, "description": description}
        if event_types is not None:
            body["event_types"] = event_types
        if secret is not None:
            body["secret"] = secret
        return dict(self.request("POST", "/admin/endpoints", body))

    def endpoints(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/admin/endpoints")["endpoints"])

    def endpoint(self, endpoint_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/admin/endpoints/{endpoint_id}"))

    def update_endpoint(self, endpoint_id: str, **changes: Any) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/admin/endpoints/{endpoint_id}", changes))

    def delete_endpoint(self, endpoint_id: str) -> None:
        self.request("DELETE", f"/admin/endpoints/{endpoint_id}")

    def rotate_secret(self, endpoint_id: str, secret: str | None = None) -> dict[str, Any]:
        body = {"secret": secret} if secret else {}
        return dict(self.request("POST", f"/admin/endpoints/{endpoint_id}/rotate-secret", body))

    def secret(self, endpoint_id: str) -> str:
        return str(self.request("GET", f"/admin/endpoints/{endpoint_id}/secret")["secret"])

    def disable(self, endpoint_id: str, reason: str = "") -> dict[str, Any]:
        body = {"reason": reason} if reason else {}
        return dict(self.request("POST", f"/admin/endpoints/{endpoint_id}/disable", body))

    def enable(self, endpoint_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/admin/endpoints/{endpoint_id}/enable", {}))

    def deliveries(
        self,
        endpoint_id: str | None = None,
        state: str | None = None,
        limit: int = 500,
        before: str | None = None,
    ) -> list[dict[str, Any]]:
        query = {"state": state, "limit": limit, "before": before}
        if endpoint_id:
            path = f"/admin/endpoints/{endpoint_id}/deliveries"
        else:
            path = "/admin/deliveries"
        return list(self.request("GET", path, query=query)["deliveries"])

    def dead_letters(
        self, endpoint_id: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        query = {"endpoint_id": endpoint_id, "limit": limit}
        return list(self.request("GET", "/admin/dead-letters", query=query)["deliveries"])

    def delivery(self, delivery_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/admin/deliveries/{delivery_id}"))

    def replay_delivery(self, delivery_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/admin/deliveries/{delivery_id}/replay", {}))

    def replay_dead(self, endpoint_id: str) -> int:
        path = f"/admin/endpoints/{endpoint_id}/replay-dead"
        return int(self.request("POST", path, {})["replayed"])

    def replay_since(self, endpoint_id: str, since: str, until: str | None = None) -> int:
        body = {"since": since, **({"until": until} if until else {})}
        path = f"/admin/endpoints/{endpoint_id}/replay-since"
        return int(self.request("POST", path, body)["replayed"])
