"""The HTTP edge of every service: one rule for what a client may send and how it is answered.

- `server`: the listening socket. A request's head must arrive within `HTTP_HEADER_TIMEOUT`
  of the connection's opening (or of its previous response), its body within
  `HTTP_BODY_TIMEOUT` of its head; at most `HTTP_MAX_CONNECTIONS` are open at once, and one
  more is answered 503 and closed.
- `edge`: the middleware `shared.runtime` installs on every service's app. Header values are
  never handed to a handler undecodable; every refusal is an `HttpError` rendered in the
  app's error shape; a client that goes away is one line at INFO; a 500 is logged, with its
  traceback, only for a bug of ours. Every response carries `X-Content-Type-Options: nosniff`
  and a `Content-Security-Policy` that allows nothing.
- `input`: reading what a client sent: the body (size, framing), JSON (size and depth, before
  the parser recurses), query parameters, ids, times. Each refusal names its field.
"""

from shared.web.edge import RENDER, install, public_error
from shared.web.errors import ClientGone, FieldError, HttpError
from shared.web.input import (
    bearer_token_matches,
    json_too_deep,
    known_query,
    parse_json,
    parse_time,
    query_int,
    read_body,
    read_json,
)
from shared.web.server import Limits, serve

__all__ = [
    "RENDER",
    "ClientGone",
    "FieldError",
    "HttpError",
    "Limits",
    "bearer_token_matches",
    "install",
    "json_too_deep",
    "known_query",
    "parse_json",
    "parse_time",
    "public_error",
    "query_int",
    "read_body",
    "read_json",
    "serve",
]
