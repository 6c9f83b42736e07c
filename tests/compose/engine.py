"""The project's containers on this machine's Docker engine: the base image (made with
debootstrap where no registry can be reached), the service image from deploy/Dockerfile, and
a Stack whose services are compose's containers on the host's network (docs/docker.md)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from shared.config import Settings
from shared.services import SERVICES
from shared.stack import Stack, StackError

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("COMPOSE_TEST_BASE", "local/debian:bookworm")
IMAGE = "whatsapp-bot:compose-test"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_CA = ROOT / "deploy" / "ca" / "machine.crt"  # gitignored; removed after the build


def docker(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if done.returncode != 0:
        raise StackError(f"docker {' '.join(args[:3])}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def has_image(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def ensure_base() -> None:
    """A Debian bookworm base from Debian's packages, kept in the engine for later runs."""
    if has_image(BASE_IMAGE) or BASE_IMAGE != "local/debian:bookworm":
        return
    rootfs = Path(tempfile.mkdtemp(prefix="wa-rootfs-"))
    try:
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs)],
            check=True,
            capture_output=True,
            timeout=600,
        )
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout, check=True, timeout=300
        )
        tar.wait()
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def build_image() -> None:
    """deploy/Dockerfile on the base, trusting this machine's CA bundle (PyPI over TLS goes
    through it here). Docker's layer cache makes a second run take seconds."""
    if CA_BUNDLE.exists():
        shutil.copyfile(CA_BUNDLE, BUILD_CA)
    try:
        docker(
            "build",
            "--network",
            "host",
            "--build-arg",
            f"BASE={BASE_IMAGE}",
            "-f",
            "deploy/Dockerfile",
            "-t",
            IMAGE,
            str(ROOT),
            timeout=900,
        )
    finally:
        BUILD_CA.unlink(missing_ok=True)


def host_compose(env: dict[str, str]) -> dict[str, object]:
    """docker-compose.yml as it runs on a machine whose containers use the host's network:
    every declared service (and prepare) on loopback at its own port, against the host's
    broker and database. Compose v1 cannot drop a key in an override file, and host networking
    refuses published ports, so the file is derived: ports and depends_on (on the compose
    file's own rabbitmq and postgres, not started here) go; everything else is kept."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    relay = f"http://127.0.0.1:{env['WEBHOOK_RELAY_PORT']}"
    services: dict[str, object] = {}
    for name in (*SERVICES, "prepare"):
        service = dict(compose["services"][name])
        service.pop("ports", None)
        service.pop("depends_on", None)
        service["network_mode"] = "host"
        service["environment"] = {
            **service.get("environment", {}),
            "AMQP_URL": env["AMQP_URL"],
            "DATABASE_URL": env["DATABASE_URL"],
            "BIND_ADDRESS": "127.0.0.1",
            "MEDIA_DIR": "/app/media",
            **({"WEBHOOK_RELAY_URL": relay} if name == "api" else {}),
        }
        services[name] = service
    return {"services": services, "volumes": compose["volumes"]}


class ComposeStack(Stack):
    """The services as compose containers. A service's pid is its container's main process
    on the host; a SIGKILLed one is brought back by the compose file's restart policy."""

    def __init__(self, settings: Settings, env: dict[str, str], run_dir: Path) -> None:
        super().__init__(settings, env=env)
        self.project = f"wa{run_dir.name.replace('-', '').replace('_', '').lower()}"[:40]
        self.env_file = run_dir / "compose.env"
        fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # secrets
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{k}={v}\n" for k, v in env.items())
        self.file = run_dir / "compose.host.yml"
        self.file.write_text(yaml.safe_dump(host_compose(env), sort_keys=False))
        self.compose_env = {**os.environ, "ENV_FILE": str(self.env_file), "IMAGE": IMAGE}

    def compose(self, *args: str, timeout: float = 120) -> str:
        command = ["docker-compose", "-p", self.project, "--project-directory", str(ROOT)]
        done = subprocess.run(
            [*command, "-f", str(self.file), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.compose_env,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"docker-compose {' '.join(args)}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).strip()

    def state(self, service: str) -> dict[str, object]:
        cid = self.container(service)
        if not cid:
            return {}
        return dict(json.loads(docker("inspect", "-f", "{{json .State}}", cid)))

    def restart_count(self, service: str) -> int:
        cid = self.container(service)
        return int(docker("inspect", "-f", "{{.RestartCount}}", cid).strip())

    def pid(self, service: str) -> int | None:
        state = self.state(service)
        pid = state.get("Pid")
        return pid if state.get("Running") and isinstance(pid, int) and pid > 0 else None

    def up(self, services: tuple[str, ...] = SERVICES, timeout: float = 120.0) -> None:
        self.compose("run", "--rm", "--no-deps", "prepare", timeout=timeout)
        self.compose("up", "-d", "--no-deps", "--no-build", *services, timeout=timeout)
        self.wait_ready(services, timeout=timeout)

    def start(self, service: str) -> int:
        """After a kill the restart policy brings the container back; wait for that."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pid = self.pid(service)
            if pid is not None:
                return pid
            time.sleep(0.1)
        raise StackError(f"{service}: the container did not come back: {self.tail(service)}")

    def kill(self, service: str) -> None:
        pid = self.pid(service)
        if pid is None:
            raise StackError(f"{service} is not running")
        os.kill(pid, signal.SIGKILL)  # the process itself, as a crash would end it

    def tail(self, service: str, lines: int = 5) -> str:
        try:
            return " | ".join(self.compose("logs", "--tail", str(lines), service).splitlines())
        except StackError as exc:
            return str(exc)

    def down(self, services: tuple[str, ...] = SERVICES) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "5")
