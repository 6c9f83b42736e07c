"""Everything a client sends passes here before any handler logic: the body (size-limited by
the app, UTF-8, JSON nested at most MAX_JSON_DEPTH deep, then converted into the route's
typed Struct, unknown fields refused), path ids and query parameters (checked against their
formats). Malformed JSON is a 400; well-formed but invalid is a 422 naming the field.

Kept small and free of the api's logic; the depth check is the shared HTTP edge's
(shared/web), linear where a backtracking scan of strings was quadratic.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from services.api.errors import ApiError, invalid, malformed, not_found
from shared.web import json_too_deep

T = TypeVar("T")
MAX_JSON_DEPTH = 32
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_IDEMPOTENCY_KEY = 255
# Ids this api makes or Meta gives (digits, wamid-like, BSUIDs such as BR.1502...).
ID = re.compile(r"[A-Za-z0-9_.:=+-]{1,200}")
_DIGITS = re.compile(r"[0-9]{1,4}")
# msgspec's messages end with " - at `$.path[0].name`".
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"field `(?P<name>[^`]+)`")


async def read_json(request: web.Request) -> Any:
    """The body as JSON (any value); an absent or empty body is an empty object."""
    try:
        raw = await request.read()  # bytes: a Content-Type charset is never trusted
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "too_large", "the body is too large") from None
    except (web.RequestPayloadError, HttpProcessingError, ConnectionError) as exc:
        raise malformed(f"the body could not be read: {type(exc).__name__}") from None
    if not raw.strip():
        return {}
    if json_too_deep(raw, MAX_JSON_DEPTH):
        raise malformed(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        # Strict RFC 8259: no NaN, no lone surrogates, no trailing garbage.
        data = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise malformed(f"the body is not UTF-8 JSON: {exc}"[:200]) from None
    _no_nul(data, "")
    return data


def _no_nul(value: Any, path: str) -> None:
    """PostgreSQL's text and jsonb cannot hold U+0000: refused here, naming where."""
    if isinstance(value, str):
        if "\x00" in value:
            raise invalid(path, "a string may not contain U+0000")
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                raise invalid(path, "a key may not contain U+0000")
            _no_nul(item, where[:200])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _no_nul(item, f"{path}[{i}]")


def convert(data: Any, type_: type[T]) -> T:
    """`data` as the Struct `type_`, or a 422 naming the field msgspec refused."""
    if not isinstance(data, dict):
        raise invalid("", "the body must be a JSON object")
    try:
        return msgspec.convert(data, type_, strict=True)
    except msgspec.ValidationError as exc:
        raise invalid(*validation_path(str(exc))) from None


def validation_path(text: str) -> tuple[str, str]:
    """msgspec's `Expected ... - at `$.a[0].b`` as ("a[0].b", "Expected ...")."""
    match = _AT.search(text)
    path = match.group("path") if match else ""
    message = text[: match.start()] if match else text
    path = path.lstrip(".")
    named = _FIELD.search(message)
    if named and ("missing required field" in message or "unknown field" in message):
        path = f"{path}.{named.group('name')}" if path else named.group("name")
    return path, message[:300]


async def body(request: web.Request, type_: type[T]) -> tuple[T, Any]:
    """The body as `type_` and as the plain JSON it was (for idempotency hashing)."""
    data = await read_json(request)
    return convert(data, type_), data


def path_id(request: web.Request, name: str, what: str) -> str:
    value = request.match_info[name]
    if not ID.fullmatch(value):
        raise not_found(what)  # cannot exist: never reaches the database
    return value


def known_query(request: web.Request, names: tuple[str, ...]) -> None:
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        # Refused rather than ignored: a misspelt filter would silently list everything.
        raise invalid(unknown[0][:50], f"unknown query parameter; known: {', '.join(names)}")
    for name in names:
        if len(request.query.getall(name, [])) > 1:
            raise invalid(name, "given more than once")


def query_text(request: web.Request, name: str, max_length: int = 200) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_length or "\x00" in value:
        raise invalid(name, f"at most {max_length} characters, no NUL")
    return value


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    value = query_text(request, name)
    if value is not None and value not in choices:
        raise invalid(name, f"one of {', '.join(choices)}")
    return value


def limit(request: web.Request) -> int:
    text = request.query.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    # ASCII digits only: int() would also take " 5", "1_0" and other scripts' digits.
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise invalid("limit", f"an integer from 1 to {MAX_LIMIT}")
    return int(text)


def idempotency_key(request: web.Request) -> str | None:
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY or not value.isprintable():
        raise invalid("Idempotency-Key", f"1 to {MAX_IDEMPOTENCY_KEY} printable characters")
    return value
