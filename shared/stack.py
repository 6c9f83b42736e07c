"""Run the services as local processes: pid files in <run_dir>/<service>.pid, logs beside.

Used by `make up`/`make down` and by the end-to-end tests, so the tests exercise exactly the
processes an operator runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from shared.config import Settings

SERVICES = ("ingress", "dedup", "conversation", "outbound", "media", "webhook_relay")
ROOT = Path(__file__).resolve().parent.parent


class StackError(Exception):
    pass


class Stack:
    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = {**os.environ, **(env or {})}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self.run_dir = Path(settings.run_dir)
        if not self.run_dir.is_absolute():
            self.run_dir = ROOT / self.run_dir

    def pid_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.log"

    def pid(self, service: str) -> int | None:
        child = self._children.get(service)
        if child is not None:
            # Our own child: its cmdline may not show the module until it has exec'd.
            return child.pid if child.poll() is None else None
        try:
            pid = int(self.pid_file(service).read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        try:  # a recycled pid belongs to some other program
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if f"services.{service}".encode() not in cmdline:
                return None
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return None
        except OSError:
            pass
        return pid

    def start(self, service: str) -> int:
        """Start one service detached (no-op when it already runs); returns its pid."""
        running = self.pid(service)
        if running:
            return running
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(service), "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._children[service] = proc
        self.pid_file(service).write_text(str(proc.pid))
        if service != "ingress" and self.settings.worker_nice > 0:
            # Relative to ours, so only ever raised (no privilege needed). Set right after
            # the start, while the interpreter is still loading: the threads it starts later
            # inherit it.
            nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.settings.worker_nice)
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, proc.pid, nice)
        return proc.pid

    def ready(self, service: str) -> tuple[bool, str]:
        url = f"http://127.0.0.1:{self.settings.port_of(service)}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return False, exc.read().decode(errors="replace") or str(exc)
        except OSError as exc:
            return False, f"not answering on port {self.settings.port_of(service)}: {exc}"

    def wait_ready(self, services: tuple[str, ...] = SERVICES, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(services)
        reasons: dict[str, str] = {}
        while waiting and time.monotonic() < deadline:
            for service in list(waiting):
                if self.pid(service) is None:
                    raise StackError(f"{service} exited: {self.tail(service)}")
                ok, reason = self.ready(service)
                if ok:
                    waiting.remove(service)
                else:
                    reasons[service] = reason
            if waiting:
                time.sleep(0.2)
        if waiting:
            raise StackError("; ".join(f"{s} not ready: {reasons.get(s, '?')}" for s in waiting))

    def tail(self, service: str, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_file(service).read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def up(self, services: tuple[str, ...] = SERVICES, timeout: float = 60.0) -> None:
        for service in services:
            self.start(service)
        self.wait_ready(services, timeout)

    def stop(self, service: str, timeout: float = 10.0) -> None:
        pid = self.pid(service)
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.pid(service) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.pid(service):
                os.kill(pid, signal.SIGKILL)
        self._reap(service)
        self.pid_file(service).unlink(missing_ok=True)

    def _reap(self, service: str) -> None:
        child = self._children.pop(service, None)
        if child is not None:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def kill(self, service: str) -> None:
        """SIGKILL, as a crash would: no clean-up, no goodbye."""
        pid = self.pid(service)
        if pid:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while self.pid(service) and time.monotonic() < deadline:
                time.sleep(0.02)
        self._reap(service)

    def down(self, services: tuple[str, ...] = SERVICES) -> None:
        for service in services:
            self.stop(service)
