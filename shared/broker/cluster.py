"""Connections to a RabbitMQ cluster: AMQP_URL may name several nodes, comma-separated.

aio-pika's robust connection reconnects to the one URL it was given, so a dead node would be
retried forever. `ClusterConnection` is that robust connection (channels, queues, consumers
restored as before) whose every new connection attempt after the first goes to the next
node in turn: when its node dies it lands on a live one. The first connection tries every
node in turn until one answers, so a service starts while any node is up.
"""

from __future__ import annotations

import logging
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection
from aio_pika.robust_connection import RobustConnection
from yarl import URL

log = logging.getLogger("bus")
# aio-pika's 5 s between attempts is a long outage when another node is up at once.
RECONNECT_INTERVAL = 1.0
# A node that is down, starting or stopping: try the next one.
_UNREACHABLE = (TimeoutError, OSError, aio_pika.exceptions.AMQPConnectionError)


def split_urls(amqp_url: str) -> list[str]:
    """The node URLs of an AMQP_URL: one, or several separated by commas."""
    urls = [u.strip() for u in amqp_url.split(",") if u.strip()]
    if not urls:
        raise ValueError("AMQP_URL names no broker")
    return urls


class ClusterConnection(RobustConnection):
    """A robust connection that moves to the next node on every reconnection attempt."""

    def __init__(self, url: URL, *args: Any, urls: list[str] | None = None, **kwargs: Any):
        super().__init__(url, *args, **kwargs)
        self._urls = [URL(u) for u in (urls or [str(url)])]
        self._at = next((i for i, u in enumerate(self._urls) if u == URL(url)), 0)
        self._attempted = False

    # aio-pika clears the transport right before each connection attempt (and nowhere
    # else once connected): the one hook where the attempt's URL can still be chosen.
    @property  # type: ignore[override]
    def transport(self) -> Any:
        return self.__dict__.get("_transport")

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is None and getattr(self, "_urls", None):
            if self._attempted and len(self._urls) > 1:
                self._at = (self._at + 1) % len(self._urls)
                self.url = self._urls[self._at]
                log.warning("broker connection lost: trying %s", self)
            self._attempted = True
        self.__dict__["_transport"] = value


async def connect_cluster(
    amqp_url: str, connect_timeout: float | None = None, **kwargs: Any
) -> ClusterConnection:
    """A robust connection to the first node that answers, moving on when its node dies."""
    urls = split_urls(amqp_url)
    kwargs.setdefault("reconnect_interval", RECONNECT_INTERVAL)
    last: BaseException | None = None
    for url in urls:
        # Built here rather than by connect_robust, which copies its keywords into the URL's
        # query: the node list, passwords and all, would be in every log line naming it.
        connection = ClusterConnection(URL(url), urls=urls, **kwargs)
        try:
            await connection.connect(timeout=connect_timeout)
            return connection
        except _UNREACHABLE as exc:
            last = exc
            log.warning("broker %s unreachable: %s", _masked(url), exc)
            await connection.close()
    assert last is not None
    raise last


async def connect_any(amqp_url: str, **kwargs: Any) -> AbstractConnection:
    """A plain (not robust) connection to the first node that answers: tools and tests."""
    urls = split_urls(amqp_url)
    last: BaseException | None = None
    for url in urls:
        try:
            return await aio_pika.connect(url, **kwargs)
        except _UNREACHABLE as exc:
            last = exc
    assert last is not None
    raise last


def _masked(url: str) -> str:
    parsed = URL(url)
    return str(parsed.with_password("******")) if parsed.password else url
