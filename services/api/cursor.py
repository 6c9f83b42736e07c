"""Opaque list cursors: the sort key of the last row a page gave, as base64url JSON. A cursor
says nothing a caller could not see on that page, and every query that takes one is still
scoped to the caller's business, so a forged cursor can only page through their own rows."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import msgspec

from services.api.errors import invalid


def encode(*values: Any) -> str:
    parts = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(msgspec.json.encode(parts)).decode().rstrip("=")


def decode(cursor: str | None, *kinds: type) -> list[Any] | None:
    """The values `encode` took, each checked to be of its kind (datetime, int, str)."""
    if cursor is None:
        return None
    try:
        if len(cursor) > 400:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = msgspec.json.decode(raw)
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError("shape")
        out: list[Any] = []
        for kind, value in zip(kinds, parts, strict=True):
            if kind is datetime:
                out.append(None if value is None else _time(value))
            elif kind is int:
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError("int")
                if not -(2**63) <= value < 2**63:
                    raise ValueError("range")
                out.append(value)
            else:
                if not isinstance(value, str) or "\x00" in value:
                    raise ValueError("str")
                out.append(value)
        return out
    except (ValueError, TypeError, binascii.Error, msgspec.DecodeError):
        raise invalid("cursor", "not a cursor this api gave") from None


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("time")
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
