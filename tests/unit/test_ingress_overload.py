"""Ingress under overload turns Meta away at once instead of holding its connections: past
INGRESS_MAX_IN_FLIGHT deliveries waiting on the broker's confirm, one more is answered 503
without being published; a confirm slower than INGRESS_PUBLISH_TIMEOUT is a 503 too. Meta
retries a 503 later, and dedup drops the copy of a delivery whose confirm still came.

The broker is a fake with the Bus's publish signature whose confirms come when the test
says; the real Bus's confirm bound (aio-pika's publish timeout) is exercised by the e2e
suites against RabbitMQ."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp.test_utils import TestClient, TestServer

from services.ingress.app import create_app
from shared.broker.bus import BrokerUnavailable
from shared.config import Settings
from shared.directory import Directory
from shared.meta.signature import sign
from shared.payloads import text_message
from shared.web import edge

SECRET = "overload-secret"


class HeldBroker:
    """Confirms when `release` is set; a publish whose confirm does not come within its
    bound raises as the Bus does."""

    transit = None  # bodies and routing keys in clear, as without a MASTER_KEY

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.arrived: asyncio.Queue[Any] = asyncio.Queue()  # each publish as it starts waiting
        self.confirmed: list[Any] = []
        self.bounds: list[float] = []

    async def publish(self, stage: str, key: str, message: Any, **kwargs: Any) -> None:
        bound = kwargs["confirm_within"]
        self.bounds.append(bound)
        self.arrived.put_nowait(message)
        try:
            await asyncio.wait_for(self.release.wait(), bound)
        except TimeoutError as exc:
            raise BrokerUnavailable("no confirm in time", 1.0) from exc
        self.confirmed.append(message)


def _client(broker: HeldBroker, **settings: Any) -> TestClient:
    config = Settings(whatsapp_app_secret=SECRET, **settings)
    app = create_app(config, broker, Directory(config, None))  # type: ignore[arg-type]
    edge.install(app, body_timeout=config.http_body_timeout)  # as shared.runtime does
    return TestClient(TestServer(app))


async def _post(client: TestClient, i: int) -> tuple[int, str | None]:
    raw = msgspec.json.encode(text_message(f"hello {i}", wamid=f"wamid.overload.{i}"))
    answer = await client.post(
        "/webhook",
        data=raw,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(SECRET, raw)},
    )
    return answer.status, answer.headers.get("Retry-After")


async def test_past_the_in_flight_limit_a_delivery_is_refused_at_once_and_not_published() -> None:
    broker = HeldBroker()
    async with _client(broker, ingress_max_in_flight=2, ingress_publish_timeout=30.0) as client:
        held = [asyncio.create_task(_post(client, i)) for i in range(2)]
        for _ in held:  # both wait on the broker now
            await broker.arrived.get()
        # The third is answered while the first two still wait on the broker: not queued.
        assert await _post(client, 2) == (503, "1")
        assert not any(t.done() for t in held)
        broker.release.set()
        assert [await t for t in held] == [(200, None), (200, None)]
        assert len(broker.confirmed) == 2  # the refused one was never published
        # Room again: the next is taken.
        assert await _post(client, 3) == (200, None)


async def test_a_confirm_slower_than_the_bound_is_a_503_meta_retries() -> None:
    broker = HeldBroker()
    async with _client(broker, ingress_publish_timeout=0.05) as client:
        assert await _post(client, 0) == (503, "1")
        assert broker.bounds == [0.05]  # ingress's own bound, not the Bus's 5 s default
        assert broker.confirmed == []


def test_the_defaults_answer_an_overloaded_broker_within_a_second() -> None:
    defaults = Settings()
    assert defaults.ingress_publish_timeout <= 1.0
    assert defaults.ingress_max_in_flight > 0
