"""The bench's peer, the pywa bot of `bot.py`, as a process the harness starts and stops.

It runs in its own virtualenv (`make bench` makes `.venv-peer` from `requirements.lock`), so
none of pywa's dependencies reach ours; without that virtualenv the peer's phase is skipped
and the report says so.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

from tests.bench.fakes import end_process

HERE = Path(__file__).resolve().parent
PYTHON = HERE.parents[2] / ".venv-peer" / "bin" / "python"
NAME = "pywa 4.5 (FastAPI, uvicorn)"


def available() -> bool:
    return PYTHON.exists()


class PeerProcess:
    def __init__(
        self, port: int, graph_url: str, openai_url: str, secret: str, token: str, key: str
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [
                str(PYTHON),
                str(HERE / "bot.py"),
                *("--port", str(port), "--graph", graph_url, "--openai", openai_url),
                *("--secret", secret, "--token", token, "--openai-key", key),
            ],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the peer exited ({self.proc.returncode}) before it listened")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the peer did not listen within 30 s") from None
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        end_process(self.proc)
