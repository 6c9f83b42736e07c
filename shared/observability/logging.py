"""Structured JSON logs, one line an event, with phone numbers masked.

Message text is never passed to the logger by our code; phone numbers are masked here as a
second line of defence for anything that slips into a field. Characters that change how a
line reads without being seen (bidirectional controls, zero-width and other format
characters, line separators, C1 controls, lone surrogates) are written as `\\uXXXX`
escapes, so a log line always shows what it holds.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Any

import msgspec
from aiohttp.http_exceptions import HttpProcessingError

from shared.observability.tracing import trace_ids

# Unicode's format (Cf), line and paragraph separator (Zl, Zp) and surrogate (Cs) characters,
# with DEL and the C1 controls (which JSON leaves raw, and terminals obey). Listed rather
# than computed at import: a test checks the list against unicodedata.
_INVISIBLE_CLASS = (
    "\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb\U000110bd"
    "\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
_INVISIBLE = re.compile(f"[{_INVISIBLE_CLASS}]")
# Ten digits or more (any script's), however long, also when invisible characters are put
# between them to break the run.
_PHONE = re.compile(rf"(?<!\d)\d(?:[{_INVISIBLE_CLASS}]*\d){{9,}}")
_encode = msgspec.json.Encoder().encode


def _mask_run(match: re.Match[str]) -> str:
    digits = [c for c in match.group() if c.isdigit()]
    return "".join(digits[:3]) + "*" * (len(digits) - 6) + "".join(digits[-3:])


def mask_phone(value: str) -> str:
    """`393471234154` -> `393******154`: enough to tell customers apart, not to call them."""
    return _PHONE.sub(_mask_run, value)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def scrub(value: str) -> str:
    """What a log line may show of `value`: phone numbers masked, invisible characters
    escaped (masking first, so a character hidden in a number does not shield it)."""
    return _INVISIBLE.sub(_escape, mask_phone(value))


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        # `conversation-2` when the stack runs several (SCALE_<SERVICE>); absent for one.
        instance = os.environ.get("SERVICE_INSTANCE", "")
        self.instance = instance if instance and instance != service else None

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "service": self.service,
            **({"instance": self.instance} if self.instance else {}),
            "logger": record.name,
            "event": scrub(record.getMessage()),
        }
        ids = trace_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        fields = getattr(record, "fields", None)
        if fields:
            line.update(_mask(fields))
        if record.exc_info:
            line["exception"] = scrub(self.formatException(record.exc_info))
        return _encode(line).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party loggers can print message bodies at DEBUG; keep them at WARNING.
    for noisy in ("aio_pika", "aiormq", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientCaused) for f in server.filters):
        server.addFilter(ClientCaused())


class ClientCaused(logging.Filter):
    """aiohttp logs a request it cannot parse, or a client that hung up, at ERROR with a
    traceback. Neither is a fault of ours: made one line at INFO (dropped below it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError | ConnectionError):
            return True
        reason = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).splitlines()
        record.msg = "client error: %s: %s"
        record.args = (type(exc).__name__, (reason[0] if reason else "")[:200])
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return logging.getLogger().isEnabledFor(logging.INFO)
