"""What the edge answers instead of a handler's result: a refusal, or a client gone."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One field of a request that was refused, and why (`path` as the client wrote it:
    `body`, `limit`, `entry[0].id`, a header's name)."""

    path: str
    message: str


class HttpError(Exception):
    """A request refused with `status` (4xx for what the client sent; 503 for an outage).

    `code` is a snake_case reason a program can test; `message` is for a person; `field`
    names the one field at fault, `fields` several. `headers` are added to the answer
    (Retry-After, WWW-Authenticate, Allow).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        *,
        fields: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.fields = (
            fields if fields is not None else ([FieldError(field, message)] if field else [])
        )
        self.headers = headers or {}


class ClientGone(Exception):
    """The client closed the connection (or was cut off by a timeout) before its request was
    read: nobody is there to answer."""
