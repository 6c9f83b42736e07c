"""Run the services as local processes: pid files in <run_dir>/<instance>.pid, logs beside.
An instance is a service's name (its first instance) or `<service>-<k>` when `SCALE_<SERVICE>`
asks for more; every method taking a service takes an instance too.

Used by `make up`/`make down` and by the end-to-end tests, so the tests exercise exactly the
processes an operator runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from shared.config import Settings
from shared.services import SERVICES, spec_of, split_instance

__all__ = ["ROOT", "SERVICES", "Stack", "StackError"]
ROOT = Path(__file__).resolve().parent.parent


class StackError(Exception):
    pass


def _private_file(path: Path, flags: int) -> int:
    """Open for writing, created 0600; an older file of ours is made 0600 too."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    with contextlib.suppress(PermissionError):
        os.fchmod(fd, 0o600)
    return fd


class Stack:
    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = {**os.environ, **(env or {})}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self.run_dir = Path(settings.run_dir)
        if not self.run_dir.is_absolute():
            self.run_dir = ROOT / self.run_dir

    def make_run_dir(self) -> None:
        """The run dir holds logs (customers' traffic) and pid files: ours only, 0700. An
        existing one is tightened too, unless it is a shared directory (sticky, like /tmp)
        or someone else's."""
        if not self.run_dir.exists():
            self.run_dir.mkdir(mode=0o700, parents=True)
        info = self.run_dir.stat()
        if info.st_uid == os.getuid() and not info.st_mode & stat.S_ISVTX:
            self.run_dir.chmod(0o700)

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
            if spec_of(split_instance(service)[0]).module.encode() not in cmdline:
                return None
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return None
        except OSError:
            pass
        return pid

    def instances(self, services: tuple[str, ...] = SERVICES) -> tuple[str, ...]:
        """Every instance the settings ask for of these services, in their order."""
        return tuple(i for s in services for i in self.settings.instances_of(s))

    def start(self, service: str) -> int:
        """Start one instance detached (no-op when it already runs); returns its pid."""
        running = self.pid(service)
        if running:
            return running
        self.make_run_dir()
        spec = spec_of(split_instance(service)[0])
        # Each instance its own port (health, metrics, its routes) and name in its logs.
        env = {**self.env, spec.port_variable: str(self.settings.port_of(service))}
        env["SERVICE_INSTANCE"] = service
        with os.fdopen(_private_file(self.log_file(service), os.O_APPEND), "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", spec.module],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._children[service] = proc
        with os.fdopen(_private_file(self.pid_file(service), os.O_TRUNC), "w") as pid:
            pid.write(str(proc.pid))
        if not spec.public and self.settings.worker_nice > 0:
            # The world-facing services (ingress: the webhook acks Meta times) keep our
            # priority; the pipeline behind them can wait milliseconds. Relative to ours, so
            # only ever raised (no privilege needed). Set right after the start, while the
            # interpreter is still loading: the threads it starts later inherit it.
            nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.settings.worker_nice)
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, proc.pid, nice)
        return proc.pid

    def ready(self, service: str) -> tuple[bool, str]:
        url = f"{self.settings.url_of(service)}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return False, exc.read().decode(errors="replace") or str(exc)
        except OSError as exc:
            return False, f"not answering on port {self.settings.port_of(service)}: {exc}"

    def wait_ready(self, services: tuple[str, ...] = SERVICES, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(self.instances(services))
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
        """Start every instance that is not running (the running ones are left alone), then
        wait until all are ready."""
        for instance in self.instances(services):
            self.start(instance)
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

    def running_instances(self, service: str) -> list[str]:
        """The instances of a service with a pid file, whatever the scale is now (so that
        lowering SCALE_<SERVICE> and running `make down` still stops the extra ones)."""
        found = {service}
        for path in self.run_dir.glob(f"{service}-*.pid"):
            with contextlib.suppress(KeyError):
                if split_instance(path.stem)[0] == service:
                    found.add(path.stem)
        found.update(self.settings.instances_of(service))
        return sorted(found, key=lambda i: split_instance(i)[1])

    def down(self, services: tuple[str, ...] = SERVICES) -> None:
        for service in services:
            for instance in self.running_instances(service):
                self.stop(instance)
