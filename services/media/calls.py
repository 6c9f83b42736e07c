"""Calls that `Upstream.request` cannot make: a download streamed to disk, or a multipart body
that must be built afresh for every try, run under the upstream's own policy (`Upstream.run`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import msgspec

from shared.errors import PermanentError, RetryLater
from shared.observability import metrics
from shared.resilience import (
    TransientNetworkError,
    Upstream,
    UpstreamError,
    retry_after_seconds,
)

T = TypeVar("T")
_decode = msgspec.json.Decoder().decode


async def call(
    upstream: Upstream,
    fn: Callable[[aiohttp.ClientSession], Awaitable[T]],
    tries: int | None = None,
) -> T:
    """Run `fn(session)` with the upstream's retries and breaker (`Upstream.run`). `fn`
    raises UpstreamError (see `raise_for_status`) or a PermanentError for an answer that is
    not a success."""
    return await upstream.run(lambda: _timed(upstream, fn), tries)


async def _timed(upstream: Upstream, fn: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
    started = time.perf_counter()
    result = "ok"
    try:
        return await fn(upstream.session)
    except UpstreamError as exc:
        result = str(exc.status)
        raise
    except PermanentError:
        result = "refused"
        raise
    except (aiohttp.ClientError, TimeoutError) as exc:
        result = "timeout" if isinstance(exc, TimeoutError) else "network"
        raise TransientNetworkError(f"{upstream.name}: {type(exc).__name__}: {exc}") from exc
    finally:
        metrics.upstream_duration.labels(upstream.name, result).observe(
            time.perf_counter() - started
        )


async def raise_for_status(name: str, resp: aiohttp.ClientResponse) -> None:
    """429 → RetryLater; 5xx → transient UpstreamError; other 4xx → permanent UpstreamError."""
    if resp.status < 400:
        return
    raw = await resp.read()
    try:
        body: Any = _decode(raw) if raw else None
    except msgspec.DecodeError:
        body = raw[:300]
    if resp.status == 429:
        delay = retry_after_seconds(resp.headers, 1.0) or 1.0
        raise RetryLater(f"{name} throttled (429)", delay)
    raise UpstreamError(name, resp.status, body, transient=resp.status >= 500)
