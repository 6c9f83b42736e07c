"""The fake Graph API and fake OpenAI of the benchmark, each in a process of its own.

`python -m tests.bench.fakes graph|openai --latency S` serves the same classes the tests use
(`tests/support/fakes.py`), so the services see the same answers, but outside the harness's
process: in-process fakes would share the load generator's interpreter and slow both. It
prints one JSON line `{"url": ...}` when it listens. Control endpoints under `/_bench/`:
- `GET  /_bench/sends?after=N`: replies received since the N-th, as [to, text, received_at]
  (monotonic clock, comparable with the generator's);
- `GET  /_bench/stats`: request counts, requests in flight now and at most since the reset;
- `POST /_bench/config` `{"latency": seconds}`: answer every request after that long;
- `POST /_bench/reset`: forget the recorded sends and counters.
To keep memory flat at 1,000 messages/s, the full request records are dropped once
answered; only the compact send log is kept.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import urllib.request
from typing import Any

from aiohttp import web

from tests.support.fakes import FakeGraphAPI, FakeOpenAI, FakeServer, RecordedRequest

_CONTROL = "/_bench/"
_COMMAND = [sys.executable, "-m", "tests.bench.fakes"]


class _Counting:
    """Mixin: requests in flight (the slow LLM's concurrent conversations) and control."""

    def _bench_init(self) -> None:
        self.in_flight = 0
        self.peak_in_flight = 0
        self.answered = 0
        self.log: list[tuple[str, str, float]] = []

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(_CONTROL):
            return await self._control(request)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await super()._dispatch(request)  # type: ignore[misc]
        finally:
            self.in_flight -= 1
            self.answered += 1

    async def _control(self, request: web.Request) -> web.Response:
        action = request.path[len(_CONTROL) :]
        server: Any = self
        if action == "sends":
            after = int(request.query.get("after", "0"))
            with server._lock:
                sends = self.log[after:]
            return web.json_response({"next": after + len(sends), "sends": sends})
        if action == "stats":
            return web.json_response(
                {
                    "answered": self.answered,
                    "sends": len(self.log),
                    "in_flight": self.in_flight,
                    "peak_in_flight": self.peak_in_flight,
                    "latency": server.latency,
                }
            )
        if action == "config" and request.method == "POST":
            body = await request.json()
            with server._lock:
                server.latency = float(body.get("latency", server.latency))
            return web.json_response({"latency": server.latency})
        if action == "reset" and request.method == "POST":
            with server._lock:
                latency = server.latency
                server.reset()
                server.latency = latency
                self.log.clear()
                self.answered = 0
                self.peak_in_flight = self.in_flight
            return web.json_response({"ok": True})
        return web.json_response({"error": "unknown control"}, status=404)


class BenchGraph(_Counting, FakeGraphAPI):
    def __init__(self, access_token: str) -> None:
        super().__init__(access_token=access_token)
        self._bench_init()

    def handle(self, rec: RecordedRequest) -> web.StreamResponse:
        response = super().handle(rec)
        self.requests.clear()
        self.read_marks.clear()
        if self.sent:
            send = self.sent.pop()
            text = (send["body"].get("text") or {}).get("body", "")
            self.log.append((send["to"], text, send["received_at"]))
        return response


class BenchOpenAI(_Counting, FakeOpenAI):
    def __init__(self, api_key: str) -> None:
        super().__init__(api_key=api_key)
        self._bench_init()

    def handle(self, rec: RecordedRequest) -> web.StreamResponse:
        response = super().handle(rec)
        self.requests.clear()
        self.completions.clear()
        return response


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.fakes")
    parser.add_argument("which", choices=["graph", "openai"])
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--token", default="test-token")
    args = parser.parse_args(argv)
    server: FakeServer = (
        BenchGraph(args.token) if args.which == "graph" else BenchOpenAI(args.token)
    )
    server.start()
    server.latency = args.latency
    print(json.dumps({"url": server.url}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


# --- the harness side --------------------------------------------------------------------------


class FakeProcess:
    """One fake in its own process, driven over its control endpoints."""

    def __init__(self, which: str, token: str, latency: float = 0.0) -> None:
        self.which = which
        self.proc = subprocess.Popen(
            [*_COMMAND, which, "--token", token, "--latency", str(latency)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fake {which} did not start")
        self.url: str = json.loads(line)["url"]
        self._next = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _call(self, action: str, body: dict[str, Any] | None = None, query: str = "") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.url}{_CONTROL}{action}{query}",
            data=data,
            method="POST" if data is not None else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def set_latency(self, seconds: float) -> None:
        self._call("config", {"latency": seconds})

    def reset(self) -> None:
        self._call("reset", {})
        self._next = 0

    def stats(self) -> dict[str, Any]:
        return self._call("stats")

    def new_sends(self) -> list[tuple[str, str, float]]:
        """The replies received since the last call (or reset)."""
        answer = self._call("sends", query=f"?after={self._next}")
        self._next = answer["next"]
        return [tuple(s) for s in answer["sends"]]  # type: ignore[misc]

    def stop(self) -> None:
        end_process(self.proc)


def end_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
