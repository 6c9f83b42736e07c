"""HTTP/1.1 written as bytes on a socket: requests no well-behaved client would send
(undecodable header bytes, partial heads, bodies trickled a byte at a time)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass
class Answer:
    status: int  # 0: the connection closed with no answer
    headers: dict[str, str]
    body: bytes


def parse(raw: bytes) -> Answer:
    if not raw:
        return Answer(0, {}, b"")
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


async def exchange(port: int, data: bytes, wait: float = 10.0) -> Answer:
    """Send `data` (a whole request, with Connection: close) and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        try:
            raw = await asyncio.wait_for(reader.read(), wait)
        except ConnectionResetError:
            raw = b""
    finally:
        writer.close()
    return parse(raw)


def request(
    method: str,
    target: str,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    body: bytes | None = None,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if body is not None:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


async def closed_after(reader: asyncio.StreamReader, limit: float) -> float | None:
    """Seconds until the server closed the connection (EOF or reset), or None if it was
    still open after `limit`."""
    start = time.monotonic()
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), limit - (time.monotonic() - start))
            if not chunk:
                return time.monotonic() - start
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - start
    except TimeoutError:
        return None
