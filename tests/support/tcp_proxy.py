"""A TCP proxy in the test's event loop, to give one client a database outage without touching
the shared PostgreSQL server: `cut("refuse")` drops every link and closes new ones at once (a
server that is down), `cut("blackhole")` keeps sockets open but forwards nothing (a network
that hangs; `swallowed` counts the bytes it ate, so a test can see a call is hanging),
`restore()` forwards again."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

Mode = Literal["up", "refuse", "blackhole"]


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.mode: Mode = "up"
        self.port = 0
        self.swallowed = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, database_url: str) -> str:
        """`database_url` with its host and port replaced by this proxy's."""
        scheme, rest = database_url.split("://", 1)
        credentials, _, location = rest.rpartition("@")
        path = location.split("/", 1)[1]
        prefix = f"{credentials}@" if credentials else ""
        return f"{scheme}://{prefix}127.0.0.1:{self.port}/{path}"

    def cut(self, mode: Literal["refuse", "blackhole"]) -> None:
        self.mode = mode
        if mode == "refuse":
            for pipe in list(self._pipes):
                pipe.cancel()
            for writer in list(self._writers):
                writer.close()
            self._writers.clear()

    def restore(self) -> None:
        self.mode = "up"

    async def close(self) -> None:
        self.cut("refuse")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.close()
            return
        self._writers.add(writer)
        if self.mode == "blackhole":
            self._start(self._pipe(reader, None))  # held open, never answered
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers.add(up_writer)
        self._start(self._pipe(reader, up_writer))
        self._start(self._pipe(up_reader, writer))

    def _start(self, pipe: Any) -> None:
        task = asyncio.create_task(pipe)
        self._pipes.add(task)
        task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter | None) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if self.mode == "blackhole" or sink is None:
                    self.swallowed += len(data)
                    continue
                sink.write(data)
                await sink.drain()
            if sink is not None:
                sink.close()  # end of stream: pass it on
