"""The api's refusals: every one is `{"error": {"code", "message", ...details}}` with the
contract's status code. Handlers raise `ApiError`; the app's middleware answers it."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

_encode = msgspec.json.Encoder().encode


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.headers, **self.details)


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    **details: Any,
) -> web.Response:
    body = {"error": {"code": code, "message": message, **details}}
    return web.Response(
        status=status,
        body=_encode(body),
        content_type="application/json",
        headers=headers or {},
    )


def malformed(message: str) -> ApiError:
    return ApiError(400, "malformed_json", message)


def unauthorized(message: str = "missing or unknown bearer token") -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(what: str = "resource") -> ApiError:
    # The same words whether it does not exist or belongs to another business.
    return ApiError(404, "not_found", f"no such {what}")


def conflict(code: str, message: str, **details: Any) -> ApiError:
    return ApiError(409, code, message, **details)


def invalid(path: str, message: str) -> ApiError:
    return ApiError(422, "validation_failed", message, fields=[{"path": path, "message": message}])


def unavailable(message: str) -> ApiError:
    return ApiError(503, "unavailable", message, {"Retry-After": "1"})
