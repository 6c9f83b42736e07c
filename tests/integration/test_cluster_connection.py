"""AMQP_URL with several nodes: the connection starts on one that answers and moves to the
next when its node goes away. Two TCP proxies in front of the one real broker stand for two
nodes (the three-node cluster itself is tests/cluster)."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

import aio_pika
import pytest

from ops.preflight import check_broker, is_loopback
from shared.broker.cluster import ClusterConnection, connect_any, connect_cluster, split_urls
from tests.support.tcp_proxy import TcpProxy


def via(proxy: TcpProxy, amqp_url: str) -> str:
    return proxy.url(amqp_url if urlsplit(amqp_url).path not in ("", "/") else amqp_url + "%2F")


def dead_node() -> str:
    return "amqp://guest:guest@127.0.0.1:1/"


def test_split_urls() -> None:
    assert split_urls("amqp://a/") == ["amqp://a/"]
    assert split_urls(" amqp://a/ , amqp://b/,") == ["amqp://a/", "amqp://b/"]
    with pytest.raises(ValueError, match="no broker"):
        split_urls(" , ")
    assert is_loopback("amqp://g@127.0.0.1:1/,amqp://g@localhost:2/")
    assert not is_loopback("amqp://g@127.0.0.1:1/,amqp://g@10.0.0.1:2/")


async def test_the_first_node_that_answers_is_used(amqp_url: str) -> None:
    both = f"{dead_node()},{amqp_url}"
    connection = await connect_cluster(both)
    try:
        assert isinstance(connection, ClusterConnection)
        assert connection.url.port == urlsplit(amqp_url).port
    finally:
        await connection.close()
    plain = await connect_any(both)
    await plain.close()
    await check_broker(both)  # preflight: one live node is enough


async def test_no_node_answering_raises(amqp_url: str) -> None:
    with pytest.raises((OSError, aio_pika.exceptions.AMQPConnectionError)):
        await connect_cluster(f"{dead_node()},amqp://guest:guest@127.0.0.1:2/")


async def test_a_consumer_moves_to_the_next_node_when_its_node_dies(amqp_url: str) -> None:
    host, port = urlsplit(amqp_url).hostname or "127.0.0.1", urlsplit(amqp_url).port or 5672
    first, second = await TcpProxy(host, port).start(), await TcpProxy(host, port).start()
    connection = await connect_cluster(
        f"{via(first, amqp_url)},{via(second, amqp_url)}", reconnect_interval=0.2
    )
    name = f"cluster-conn-{uuid.uuid4().hex[:8]}"
    try:
        assert connection.url.port == first.port
        assert "urls" not in str(connection) and "guest:guest" not in str(connection)
        restored = asyncio.Event()
        connection.reconnect_callbacks.add(lambda *_: restored.set())
        channel = await connection.channel()
        queue = await channel.declare_queue(name, auto_delete=False, durable=True)
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            await got.put(message.body)

        await queue.consume(on_message)
        await channel.default_exchange.publish(aio_pika.Message(b"before"), routing_key=name)
        assert await asyncio.wait_for(got.get(), 10) == b"before"

        first.cut("refuse")  # the node dies: links dropped, new ones refused
        await _reconnected(connection, second.port)
        await asyncio.wait_for(restored.wait(), 30)  # channels, queues, consumers restored
        await channel.default_exchange.publish(aio_pika.Message(b"after"), routing_key=name)
        # The restored consumer gets it: channel, queue and subscription came back.
        assert await asyncio.wait_for(got.get(), 10) == b"after"
    finally:
        plain = await connect_any(amqp_url)
        async with plain:
            await (await plain.channel()).queue_delete(name)
        await connection.close()
        await first.close()
        await second.close()


async def _reconnected(connection: ClusterConnection, port: int) -> None:
    for _ in range(600):
        if connection.url.port == port and connection.connected.is_set():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still on {connection.url.port}, not {port}")
