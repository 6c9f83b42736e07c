"""Upstream: retries, timeouts, circuit breaker and Retry-After, against real HTTP fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from shared.errors import RetryLater
from shared.resilience import TransientNetworkError, Upstream, UpstreamError
from tests.conftest import OPENAI_API_KEY
from tests.support.fakes import FakeOpenAI, Fault, openai_error

BODY = {"model": "m", "messages": [{"role": "user", "content": "ping"}]}
Make = Callable[..., Upstream]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    async with aiohttp.ClientSession() as session:

        def build(**kw: Any) -> Upstream:
            kw.setdefault("timeout", 2.0)
            kw.setdefault("backoff_factor", 0.01)
            return Upstream("openai", session, **kw)

        yield build


async def ask(upstream: Upstream, api: FakeOpenAI) -> Any:
    return await upstream.request(
        "POST",
        api.url + "/v1/chat/completions",
        json=BODY,
        headers={"Authorization": f"Bearer {OPENAI_API_KEY}"},
    )


async def test_success_returns_the_decoded_json(make: Make, fake_openai: FakeOpenAI) -> None:
    answer = await ask(make(), fake_openai)
    assert answer["choices"][0]["message"]["content"] == "echo: ping"


async def test_no_retry_on_400(make: Make, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(openai_error(400, "bad request", "invalid_request_error"))
    with pytest.raises(UpstreamError) as caught:
        await ask(make(max_tries=4), fake_openai)
    assert caught.value.status == 400
    assert not caught.value.transient
    assert len(fake_openai.requests) == 1


async def test_retries_on_500_until_success(make: Make, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(openai_error(500), openai_error(502))
    answer = await ask(make(max_tries=3), fake_openai)
    assert answer["choices"][0]["message"]["content"] == "echo: ping"
    assert len(fake_openai.requests) == 3
    assert len(fake_openai.completions) == 1


async def test_gives_up_after_max_tries_on_500(make: Make, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_always(openai_error(500))
    with pytest.raises(UpstreamError) as caught:
        await ask(make(max_tries=3), fake_openai)
    assert caught.value.transient
    assert caught.value.status == 500
    assert len(fake_openai.requests) == 3


async def test_retries_after_a_timeout(make: Make, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault(status=None, delay=2.0))
    answer = await ask(make(timeout=0.2, max_tries=3), fake_openai)
    assert answer["choices"][0]["message"]["content"] == "echo: ping"
    assert len(fake_openai.requests) == 2


async def test_persistent_timeouts_are_transient_errors(
    make: Make, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail_always(Fault(status=None, delay=2.0))
    with pytest.raises(TransientNetworkError):
        await ask(make(timeout=0.1, max_tries=2), fake_openai)
    assert len(fake_openai.requests) == 2


async def test_retries_after_a_dropped_connection(make: Make, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault(disconnect=True))
    answer = await ask(make(max_tries=2), fake_openai)
    assert answer["choices"][0]["message"]["content"] == "echo: ping"


async def test_breaker_opens_after_fail_max_and_stops_sending(
    make: Make, fake_openai: FakeOpenAI
) -> None:
    fail_max = 3
    upstream = make(max_tries=1, fail_max=fail_max, reset_timeout=30)
    fake_openai.fail_always(openai_error(500))

    outcomes = []
    for _ in range(fail_max + 3):
        try:
            await ask(upstream, fake_openai)
        except (UpstreamError, RetryLater) as exc:
            outcomes.append(exc)
    assert len(fake_openai.requests) == fail_max, "no request once the breaker is open"
    assert all(isinstance(e, UpstreamError) for e in outcomes[: fail_max - 1])
    assert all(isinstance(e, RetryLater) for e in outcomes[fail_max:])
    assert all(0 < e.delay <= 30 for e in outcomes[fail_max:] if isinstance(e, RetryLater))


async def test_breaker_counts_retries_inside_one_call(make: Make, fake_openai: FakeOpenAI) -> None:
    upstream = make(max_tries=5, fail_max=2, reset_timeout=30)
    fake_openai.fail_always(openai_error(503))
    with pytest.raises(RetryLater):
        await ask(upstream, fake_openai)
    assert len(fake_openai.requests) == 2
    with pytest.raises(RetryLater):
        await ask(upstream, fake_openai)
    assert len(fake_openai.requests) == 2


async def test_breaker_closes_again_after_reset_timeout(
    make: Make, fake_openai: FakeOpenAI
) -> None:
    upstream = make(max_tries=1, fail_max=1, reset_timeout=0.2)
    fake_openai.inject(openai_error(500))
    with pytest.raises(RetryLater):
        await ask(upstream, fake_openai)
    with pytest.raises(RetryLater):
        await ask(upstream, fake_openai)
    await asyncio.sleep(0.3)  # the reset timeout passes
    answer = await ask(upstream, fake_openai)
    assert answer["choices"][0]["message"]["content"] == "echo: ping"
    assert len(fake_openai.requests) == 2


async def test_client_errors_do_not_open_the_breaker(make: Make, fake_openai: FakeOpenAI) -> None:
    upstream = make(max_tries=1, fail_max=2)
    fake_openai.fail_always(openai_error(400, "bad", "invalid_request_error"))
    for _ in range(4):
        with pytest.raises(UpstreamError):
            await ask(upstream, fake_openai)
    fake_openai.clear_faults()
    await ask(upstream, fake_openai)
    assert len(fake_openai.requests) == 5


async def test_429_with_retry_after_raises_retry_later_with_that_delay(
    make: Make, fake_openai: FakeOpenAI
) -> None:
    fake_openai.inject(
        openai_error(429, "Rate limit reached", "requests", headers={"Retry-After": "4"})
    )
    with pytest.raises(RetryLater) as caught:
        await ask(make(max_tries=3), fake_openai)
    assert caught.value.delay == 4.0
    assert len(fake_openai.requests) == 1, "the lane waits; the call does not hammer"


async def test_429_does_not_open_the_breaker(make: Make, fake_openai: FakeOpenAI) -> None:
    upstream = make(max_tries=1, fail_max=1)
    for _ in range(3):
        fake_openai.inject(openai_error(429, headers={"Retry-After": "1"}))
        with pytest.raises(RetryLater):
            await ask(upstream, fake_openai)
    await ask(upstream, fake_openai)
    assert len(fake_openai.completions) == 1
