"""Calls to the outside world: timeout, retries with backoff and jitter, a circuit breaker.

One `Upstream` per external API. Network errors, timeouts and 5xx are retried with exponential
backoff (the `backoff` package) and counted by the breaker (`pybreaker`); other 4xx are not
retried. While the breaker is open, or when the upstream asks to slow down (429 with
Retry-After), the call raises RetryLater: the message waits in its lane instead of hammering.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import backoff
import msgspec
import pybreaker
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from shared.errors import PermanentError, RetryLater
from shared.observability import metrics, tracing

_decode = msgspec.json.Decoder().decode
T = TypeVar("T")


@dataclass
class UpstreamError(Exception):
    """An answer that is not a success. `transient` ones are retried and trip the breaker."""

    upstream: str
    status: int
    body: Any
    transient: bool
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"{self.upstream} answered {self.status}: {str(self.body)[:300]}"


class CircuitOpen(RetryLater):
    """The upstream's breaker is open: it has been failing, so no call was made."""


class TransientNetworkError(Exception):
    pass


def retry_after_seconds(headers: Any, default: float | None = None) -> float | None:
    raw = headers.get("Retry-After") if headers is not None else None
    if raw is None:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        return default


class _BreakerMetrics(pybreaker.CircuitBreakerListener):
    """Breaker state as a gauge (0 closed, 1 half-open, 2 open) and its transitions."""

    STATES = {"closed": 0, "half-open": 1, "open": 2}

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        name = str(cb.name)
        state = str(getattr(new_state, "name", new_state))
        metrics.breaker_state.labels(name).set(self.STATES.get(state, 2))
        metrics.breaker_transitions.labels(name, state).inc()


def _is_permanent(exc: BaseException) -> bool:
    # A refusal raised by a caller's classify (e.g. Meta's 131047) is the upstream working
    # as intended: it must neither be retried nor trip the breaker for everyone else.
    if isinstance(exc, PermanentError):
        return True
    return isinstance(exc, UpstreamError) and not exc.transient


class Upstream:
    def __init__(
        self,
        name: str,
        session: aiohttp.ClientSession,
        timeout: float,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        max_tries: int = 3,
        backoff_factor: float = 0.5,
        breaker: str | None = None,
    ) -> None:
        self.name = name
        name = breaker or name  # the breaker's own name (per number, say); metrics keep `name`
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            exclude=[_is_permanent, RetryLater],
            name=name,
            listeners=[_BreakerMetrics()],
        )
        metrics.breaker_state.labels(name).set(0)
        self.max_tries = max_tries
        self.backoff_factor = backoff_factor

    def _open_delay(self) -> float:
        opened = getattr(self.breaker._state_storage, "opened_at", None)
        if opened is None:
            return self.breaker.reset_timeout
        elapsed = (time.time() - opened.timestamp()) if hasattr(opened, "timestamp") else 0
        return max(0.5, self.breaker.reset_timeout - elapsed)

    async def request(
        self,
        method: str,
        url: str,
        classify: Callable[[int, Any, Any], None] | None = None,
        tries: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send with retries; returns the decoded JSON (or bytes when not JSON)."""
        return await self.run(lambda: self._once(method, url, classify, **kwargs), tries)

    async def run(self, attempt_once: Callable[[], Awaitable[T]], tries: int | None = None) -> T:
        """This upstream's policy around any call (streamed downloads and multipart uploads
        too): backoff with full jitter on transient errors, the breaker, no retry when
        permanent, RetryLater (CircuitOpen) while the breaker is open."""

        @backoff.on_exception(
            backoff.expo,
            (TransientNetworkError, UpstreamError),
            max_tries=tries or self.max_tries,
            factor=self.backoff_factor,
            jitter=backoff.full_jitter,
            giveup=_is_permanent,
        )
        async def attempt() -> T:
            try:
                with self.breaker.calling():
                    return await attempt_once()
            except pybreaker.CircuitBreakerError as exc:
                raise CircuitOpen(f"{self.name} circuit open", self._open_delay()) from exc

        return await attempt()

    async def _once(
        self,
        method: str,
        url: str,
        classify: Callable[[int, Any, Any], None] | None,
        **kwargs: Any,
    ) -> Any:
        # No URL attribute: Graph API paths carry ids; the upstream's name is enough.
        with tracing.span(f"{self.name} {method}", SpanKind.CLIENT, upstream=self.name):
            return await self._call(method, url, classify, **kwargs)

    async def _call(
        self,
        method: str,
        url: str,
        classify: Callable[[int, Any, Any], None] | None,
        **kwargs: Any,
    ) -> Any:
        started = time.perf_counter()
        result = "error"
        try:
            async with self.session.request(method, url, timeout=self.timeout, **kwargs) as resp:
                raw = await resp.read()
                try:
                    body: Any = _decode(raw) if raw else None
                except msgspec.DecodeError:
                    body = raw
                result = str(resp.status)
                if classify is not None:
                    classify(resp.status, body, resp.headers)
                if resp.status == 429:
                    raise RetryLater(
                        f"{self.name} throttled (429)",
                        retry_after_seconds(resp.headers, 1.0) or 1.0,
                    )
                if resp.status >= 400:
                    raise UpstreamError(self.name, resp.status, body, transient=resp.status >= 500)
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            result = "timeout" if isinstance(exc, TimeoutError) else "network"
            raise TransientNetworkError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        finally:
            trace.get_current_span().set_attribute("upstream.result", result)
            metrics.upstream_duration.labels(self.name, result).observe(
                time.perf_counter() - started
            )


class Upstreams:
    """One Upstream per key (a number, a business) where the outside's limits and failures
    are per key: one number's token revoked must not open the breaker for every number."""

    def __init__(
        self, name: str, session: aiohttp.ClientSession, timeout: float, **options: Any
    ) -> None:
        self.name, self.session, self.timeout, self.options = name, session, timeout, options
        self._each: dict[str, Upstream] = {}

    def __call__(self, key: str) -> Upstream:
        upstream = self._each.get(key)
        if upstream is None:
            upstream = Upstream(
                self.name, self.session, self.timeout, breaker=f"{self.name}:{key}", **self.options
            )
            self._each[key] = upstream
        return upstream
