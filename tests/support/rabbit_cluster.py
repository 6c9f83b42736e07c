"""A three-node RabbitMQ cluster on this machine, for the cluster tests.

Debian's `rabbitmq-server`, started three times with its own node name, AMQP and
distribution ports, data and log directories and plugins file, and one Erlang cookie of its
own (in a HOME of its own, which both the nodes and `rabbitmqctl` read). The machine's main
broker (rabbit@localhost, 5672) is never touched: the nodes only share its epmd.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
PLUGINS = "[rabbitmq_consistent_hash_exchange]."


def available() -> bool:
    return Path(SERVER).exists() and Path(CTL).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str  # short name, e.g. "c1"
    nodename: str  # the Erlang node, e.g. "c1-1234@localhost"
    port: int
    dist_port: int
    base: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"


@dataclass
class RabbitCluster:
    root: Path
    size: int = 3
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)
        tag = f"{os.getpid()}"
        for i in range(1, self.size + 1):
            base = self.root / f"c{i}"
            base.mkdir(parents=True, exist_ok=True)
            # Ports far apart: the CLI tools take the distribution port + 10000 onwards.
            self.nodes.append(
                Node(f"c{i}", f"c{i}-{tag}@localhost", free_port(), free_port(), base)
            )

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def amqp_url(self) -> str:
        """Every node's URL, comma-separated, as AMQP_URL takes them."""
        return ",".join(self.urls)

    def _env(self, node: Node) -> dict[str, str]:
        conf = node.base / "rabbitmq.conf"
        conf.write_text(
            f"listeners.tcp.local = 127.0.0.1:{node.port}\n"
            "loopback_users.guest = true\n"
            # One 2-core machine runs three nodes: a slow tick is not a dead peer.
            "cluster_partition_handling = pause_minority\n"
        )
        plugins = node.base / "enabled_plugins"
        plugins.write_text(PLUGINS)
        envfile = node.base / "rabbitmq-env.conf"
        envfile.write_text("")
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "RABBITMQ_CONF_ENV_FILE": str(envfile),
            "RABBITMQ_NODENAME": node.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(conf),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.base / "log"),
            "RABBITMQ_PID_FILE": str(node.base / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def ctl(self, node: Node, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [CTL, "-n", node.nodename, *args],
            env=self._env(node),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} on {node.name} failed: "
                f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}"
            )
        return result.stdout.decode(errors="replace")

    def start_node(self, node: Node) -> None:
        log = (node.base / "console.log").open("ab")
        node.process = subprocess.Popen(
            [SERVER],
            env=self._env(node),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def wait_node(self, node: Node, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ctl(node, "await_startup", "--timeout", "30", timeout=40)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(
                        f"{node.name} exited: {(node.base / 'console.log').read_text()[-2000:]}"
                    ) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def start(self) -> None:
        for node in self.nodes:
            self.start_node(node)
        for node in self.nodes:
            self.wait_node(node)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.nodename)
            self.ctl(node, "start_app")
        for node in self.nodes:
            self.wait_node(node)

    def running_nodes(self, via: Node) -> list[str]:
        out = self.ctl(via, "eval", "rabbit_nodes:all_running().")
        return [n for n in (x.nodename for x in self.nodes) if n in out]

    def kill(self, node: Node) -> None:
        """SIGKILL the node's whole process group: no clean shutdown, as a crash."""
        if node.process is None:
            return
        try:
            os.killpg(node.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.process.wait(timeout=30)
        node.process = None

    def restart(self, node: Node) -> None:
        self.start_node(node)
        self.wait_node(node)

    def stop(self) -> None:
        for node in self.nodes:
            self.kill(node)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
