"""Dropping the dead letters about someone: an erasure deletes the messages of the
`dead-letters` queue whose body or headers name the erased customer (their conversation ids,
their ids, their messages' wamids), and leaves every other where it was."""

from __future__ import annotations

from collections.abc import Iterable

import aio_pika

from shared.broker.topology import DEAD_LETTERS, declare_dead_letters
from shared.crypto.transit import NotOurs, Transit, opened

MAX_SCAN = 100_000  # dead letters looked at per erasure: a bound, not a queue's expected size


def _open(transit: Transit | None, body: bytes) -> bytes:
    try:
        return opened(transit, body)
    except NotOurs:
        return body  # not ours to open: looked at as it is


def names_any(body: bytes, headers: dict[str, object], needles: list[bytes]) -> bool:
    text = body + repr(sorted(headers.items(), key=lambda kv: kv[0])).encode()
    return any(n in text for n in needles)


async def drop_about(amqp_url: str, needles: Iterable[str], transit: Transit | None = None) -> int:
    """Delete the dead letters naming any of `needles`; returns how many. The others are
    taken unacked and put back when the channel closes (nobody consumes the queue but
    `ops dead-letters`). Sealed bodies are opened with `transit` to be looked into."""
    wanted = [n.encode() for n in needles if n]
    if not wanted:
        return 0
    connection = await aio_pika.connect(amqp_url)
    dropped = 0
    async with connection:
        channel = await connection.channel()
        await declare_dead_letters(channel)
        queue = await channel.get_queue(DEAD_LETTERS)
        for _ in range(MAX_SCAN):
            message = await queue.get(fail=False, no_ack=False)
            if message is None:
                break
            if names_any(_open(transit, message.body), dict(message.headers or {}), wanted):
                await message.ack()
                dropped += 1
    return dropped
