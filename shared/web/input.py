"""Reading what a client sent. Every refusal is an `HttpError` naming the field at fault;
nothing here lets a client's bytes raise anything else.

Statuses follow the public API's conventions: 400 for a body that cannot be read or is not
JSON, 413 for one over the app's `client_max_size`, 422 (`validation_failed`) for JSON or
parameters that are well formed but not what the route takes.
"""

from __future__ import annotations

import hmac
import re
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from shared.web.errors import ClientGone, HttpError

# Strings in JSON, in one linear pass: the possessive loop never backtracks, and a string
# left open (or ending in a lone backslash) runs to the end instead of being retried from
# each later quote, which made a scan of `"\"\"\"...` quadratic.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_OPENS = {ord("["): ord("]"), ord("{"): ord("}")}
_decode = msgspec.json.Decoder().decode
_DIGITS = re.compile(r"[0-9]{1,18}")


def json_too_deep(raw: bytes, limit: int) -> bool:
    """Whether `raw` nests arrays and objects deeper than `limit`, as a JSON parser would
    see it (brackets inside strings do not count). msgspec recurses once per level and
    raises RecursionError near 1,000, wherever the stack already is, so the depth is
    checked before it parses.

    Linear, and free for the usual body (fewer brackets than the limit). Where the text
    stops being JSON (a closing bracket too many or of the wrong kind) the answer is False:
    the parser stops there too, no deeper than what was counted before."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    expected: list[int] = []
    for byte in _STRING.sub(b"", raw).translate(None, _NOT_BRACKET):
        closer = _OPENS.get(byte)
        if closer is not None:
            expected.append(closer)
            if len(expected) > limit:
                return True
        elif not expected or expected.pop() != byte:
            return False
    return False


def parse_json(raw: bytes, *, max_depth: int, field: str = "body") -> Any:
    """`raw` as JSON (strict RFC 8259 and UTF-8: no NaN, no lone surrogates, no BOM)."""
    if json_too_deep(raw, max_depth):
        raise HttpError(
            400, "json_too_deep", f"the {field} nests deeper than {max_depth} levels", field
        )
    try:
        return _decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise HttpError(
            400, "malformed_json", f"the {field} is not UTF-8 JSON: {exc}"[:200], field
        ) from None


async def read_body(request: web.BaseRequest) -> bytes:
    """The whole body as bytes (a Content-Type charset is never trusted), at most the
    app's `client_max_size` once decoded. Raises ClientGone when the connection is closed
    before the body is in (the client left, or the body timeout cut it off)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise HttpError(
            413, "payload_too_large", f"the body is over {request.client_max_size} bytes", "body"
        ) from None
    except (ConnectionError, web.RequestPayloadError, HttpProcessingError) as exc:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ClientGone(
                f"connection closed while reading the body: {type(exc).__name__}"
            ) from None
        # Still connected: a broken chunked framing or Content-Encoding.
        raise HttpError(
            400, "malformed_body", f"the body could not be read: {type(exc).__name__}", "body"
        ) from None


async def read_json(
    request: web.BaseRequest, *, max_depth: int, fields: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The body as a JSON object; no body (or only whitespace) is {}. With `fields`, a
    field not among them is refused rather than ignored: a misspelt option would otherwise
    silently do the default."""
    if not request.can_read_body:
        return {}
    raw = await read_body(request)
    if not raw.strip():
        return {}
    data = parse_json(raw, max_depth=max_depth)
    if not isinstance(data, dict):
        raise HttpError(422, "validation_failed", "the body must be a JSON object", "body")
    if fields is not None:
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise HttpError(
                422,
                "validation_failed",
                f"unknown fields {', '.join(repr(k[:50]) for k in unknown[:5])};"
                f" known: {', '.join(fields)}",
                unknown[0][:50],
            )
    return data


def bearer_token_matches(request: web.BaseRequest, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared as UTF-8 bytes in constant time."""
    header = request.headers.get("Authorization", "")
    # The edge hands over header values as text that always encodes (see edge.py); the
    # error handler is a second line of defence for a request that did not pass it.
    scheme, _, credentials = header.encode("utf-8", "surrogateescape").partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(
        credentials.strip(), token.encode("utf-8")
    )


def known_query(request: web.BaseRequest, names: tuple[str, ...]) -> None:
    """Refuses a query parameter not among `names` (a misspelt filter would otherwise list
    everything)."""
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        raise HttpError(
            422,
            "validation_failed",
            f"unknown query parameter {unknown[0][:50]!r}; known: {', '.join(names)}",
            unknown[0][:50],
        )


def query_int(request: web.BaseRequest, name: str, *, default: int, low: int, high: int) -> int:
    """An integer query parameter from `low` to `high`, in ASCII digits only: int() would
    also take " 5", "1_0" and other scripts' digits."""
    text = request.query.get(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise HttpError(
            422, "validation_failed", f"{name} must be an integer from {low} to {high}", name
        )
    return int(text)


def parse_time(value: object, name: str) -> datetime:
    """An RFC 3339 time, as an aware datetime in UTC (a time without offset is UTC)."""
    if not isinstance(value, str):
        raise HttpError(
            422,
            "validation_failed",
            f"{name} must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z",
            name,
        )
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # Normalised here: a far offset at the ends of the calendar overflows, and would do
        # so later, in the database driver, otherwise.
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise HttpError(
            422, "validation_failed", f"{name} is not an RFC 3339 time: {value[:50]!r}", name
        ) from None
