"""The middleware every service's app runs first (installed by `shared.runtime`).

What it guarantees, whatever a handler does:
- header values are text that encodes: aiohttp keeps bytes that are not UTF-8 as lone
  surrogates, which raise as soon as a handler encodes them (hmac, a database driver,
  the JSON logger). Such a value reaches the handler as Latin-1 text instead: lossless,
  never refused, never a surrogate;
- a body still incomplete `body_timeout` seconds after its head is cut off (slowloris);
- every `HttpError` and every aiohttp HTTPException (404, 405, 413) is answered in the
  app's error shape (`RENDER`, by default the public API's);
- a client gone before its request was read is one line at INFO, never a traceback;
- anything else is a bug of ours: logged once with its traceback (route and method, never
  the body), answered 500 without details;
- every response carries `X-Content-Type-Options: nosniff` and a `Content-Security-Policy`
  that allows nothing, so no browser ever runs or sniffs what a client made us echo.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from shared.observability import metrics
from shared.web.errors import ClientGone, HttpError

log = logging.getLogger("http")

Renderer = Callable[[HttpError], web.Response]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
RENDER: web.AppKey[Renderer] = web.AppKey("edge_render")
BODY_TIMEOUT = web.AppKey("edge_body_timeout", float)
# aiohttp's exceptions the router and the body reader raise, as the public API names them.
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    503: "unavailable",
}
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def public_error(error: HttpError) -> web.Response:
    """`{"error": {"code", "message", "fields"?}}`: the public API's error shape."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.fields:
        body["fields"] = [{"path": f.path, "message": f.message} for f in error.fields]
    return web.json_response({"error": body}, status=error.status, headers=error.headers)


def install(app: web.Application, *, body_timeout: float, render: Renderer | None = None) -> None:
    """Put the edge in front of every route of `app` (once; before the app is started).
    `render` writes the app's errors; a service may also set `app[RENDER]` itself."""
    if BODY_TIMEOUT in app:
        return
    app[BODY_TIMEOUT] = body_timeout
    if render is not None:
        app[RENDER] = render
    app.middlewares.insert(0, _edge)
    app.on_response_prepare.append(_security_headers)


async def _security_headers(_: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def route_of(request: web.BaseRequest) -> str:
    """The route's template (`/admin/endpoints/{id}`), never the path as sent: a path may
    carry personal data, and its variety would flood the logs."""
    match_info = getattr(request, "match_info", None)
    resource = match_info.route.resource if match_info is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def _edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    render = request.app.get(RENDER, public_error)
    cut_off = _watch_body(request, request.app[BODY_TIMEOUT])
    try:
        return await handler(_with_text_headers(request))
    except HttpError as exc:
        return render(exc)
    except ClientGone as exc:
        return _gone(request, cut_off(), str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are answers, not errors
        return render(_from_aiohttp(exc))
    except ConnectionError as exc:
        transport = request.transport
        if transport is None or transport.is_closing():
            return _gone(request, cut_off(), repr(exc))
        bug: Exception = exc
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        bug = exc
    log.error(
        "request failed",
        exc_info=bug,
        extra={"fields": {"method": request.method, "route": route_of(request)}},
    )
    return render(
        HttpError(500, "internal_error", "internal error; the service's log has the details")
    )


def _from_aiohttp(exc: web.HTTPException) -> HttpError:
    headers = {k: exc.headers[k] for k in _KEPT_HEADERS if k in exc.headers}
    # aiohttp's default text is "404: Not Found"; a text of its own (413's) says more.
    text = exc.text or ""
    message = text if text and not text.startswith(f"{exc.status}:") else exc.reason.lower()
    return HttpError(exc.status, _CODES.get(exc.status, "http_error"), message, headers=headers)


def _gone(request: web.Request, cut_off: bool, detail: str) -> web.Response:
    if not cut_off:  # a cut-off was logged when it happened
        metrics.http_refused.labels("client_gone").inc()
        log.info(
            "client gone before its request was read",
            extra={
                "fields": {
                    "method": request.method,
                    "route": route_of(request),
                    "detail": detail[:200],
                }
            },
        )
    # Nobody reads it: aiohttp sees the closed transport and drops it quietly.
    return web.Response(status=400)


def _with_text_headers(request: web.Request) -> web.Request:
    """`request`, or a clone whose undecodable header values are Latin-1 text."""
    if all(value.isascii() or _encodes(value) for value in request.headers.values()):
        return request  # the usual case: nothing copied
    headers = CIMultiDict(
        (
            name,
            value
            if _encodes(value)
            else value.encode("utf-8", "surrogateescape").decode("latin-1"),
        )
        for name, value in request.headers.items()
    )
    return request.clone(headers=headers)


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _watch_body(request: web.Request, timeout: float) -> Callable[[], bool]:
    """Closes the connection if the body is still incomplete `timeout` seconds from now,
    whether or not the handler reads it (aiohttp would otherwise wait for a trickled body,
    and then linger reading it for another 10 s). Returns whether it did."""
    content = request.content
    transport = request.transport
    fired = False
    if not request.body_exists or content.is_eof() or transport is None:
        return lambda: fired

    def expire() -> None:
        nonlocal fired
        if not content.is_eof() and not transport.is_closing():
            fired = True
            metrics.http_refused.labels("body_timeout").inc()
            log.info(
                "request body not received in time: connection closed",
                extra={
                    "fields": {
                        "method": request.method,
                        "route": route_of(request),
                        "timeout": timeout,
                    }
                },
            )
            # abort, not close: nothing of ours is waiting to be written, and a client that
            # also stopped reading must not hold the socket open.
            transport.abort()

    asyncio.get_running_loop().call_later(timeout, expire)
    return lambda: fired
