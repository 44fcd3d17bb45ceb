"""A three-node RabbitMQ cluster on this machine behind one address (haproxy), for tests.

    scripts/rabbitmq-cluster start|stop|status
    scripts/rabbitmq-cluster stop-app|start-app|kill|start-node|restart NODE   (NODE: 1, 2 or 3)

Three ``rabbitmq-server`` nodes of the machine's own RabbitMQ installation, each on its own
ports, with its own data, logs, config and Erlang cookie, never the machine's node: every
``rabbitmqctl`` call names its node with ``-n``, and the cluster's ``HOME`` holds a cookie of its
own, so a call that forgot ``-n`` is refused by the machine's node instead of acting on it.
haproxy (Debian's, installed with the package manager when missing) listens on one AMQP port and
one management port and forwards to the nodes that pass their health check; it closes the
connections of a node marked down (``on-marked-down shutdown-sessions``), so clients reconnect
through it to a live node at once. aio-pika takes one URL only, hence the proxy.

Parameters (environment): ``RABBITMQ_CLUSTER_DIR`` (default ``var/rabbitmq-cluster`` in the
repository), ``RABBITMQ_CLUSTER_PORT`` (haproxy's AMQP port, default 5700; management is the
next port; node N uses base + 10·N for AMQP, + 1 for management, + 2 for Erlang distribution),
``RABBITMQ_CLUSTER_NAME`` (node name prefix, default ``rc``: nodes ``rc1@localhost``...).

Measured here (RabbitMQ 3.10.8): the whole cluster from scratch in ~30 s, ~150 MB per node. A
clustered node restarted alone waits for its peers, so ``start`` starts all three at once.
"""

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[2]
#: The server scripts themselves: the ``/usr/sbin`` wrappers switch user and cookie.
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
NODES = (1, 2, 3)
CREDENTIALS = ("guest", "guest")  # guest may log in from loopback, which is all we serve


@dataclass(frozen=True)
class Cluster:
    base_dir: Path
    base_port: int = 5700
    name: str = "rc"

    @classmethod
    def from_env(cls) -> "Cluster":
        return cls(
            base_dir=Path(
                os.environ.get("RABBITMQ_CLUSTER_DIR", ROOT / "var" / "rabbitmq-cluster")
            ),
            base_port=int(os.environ.get("RABBITMQ_CLUSTER_PORT", "5700")),
            name=os.environ.get("RABBITMQ_CLUSTER_NAME", "rc"),
        )

    # --- addresses ----------------------------------------------------------------------------

    @property
    def amqp_url(self) -> str:
        """The one address clients use (haproxy), default vhost."""
        return f"amqp://{CREDENTIALS[0]}:{CREDENTIALS[1]}@127.0.0.1:{self.base_port}/"

    def amqp_urls(self, vhost: str) -> list[str]:
        """Where clients of ``vhost`` connect: the proxy alone (it picks a live node)."""
        return [self.amqp_url.removesuffix("/") + "/" + quote(vhost, safe="")]

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.base_port + 1}"

    def node(self, n: int) -> str:
        return f"{self.name}{n}@localhost"

    def amqp_port(self, n: int) -> int:
        return self.base_port + 10 * n

    def management_port(self, n: int) -> int:
        return self.base_port + 10 * n + 1

    def dist_port(self, n: int) -> int:
        return self.base_port + 10 * n + 2

    def node_dir(self, n: int) -> Path:
        return self.base_dir / f"node{n}"

    def pid_file(self, n: int) -> Path:
        return self.node_dir(n) / "rabbitmq.pid"

    @property
    def home(self) -> Path:
        return self.base_dir / "home"

    # --- the nodes ----------------------------------------------------------------------------

    def _env(self, n: int) -> dict[str, str]:
        node_dir = self.node_dir(n)
        return {
            **os.environ,
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.node(n),
            "RABBITMQ_NODE_PORT": str(self.amqp_port(n)),
            "RABBITMQ_DIST_PORT": str(self.dist_port(n)),
            "RABBITMQ_MNESIA_BASE": str(node_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node_dir / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file(n)),
            # Erlang distribution on loopback only, like the AMQP and management listeners.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_CONFIG_FILE": str(node_dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(node_dir / "enabled_plugins"),
            # The system's env file names the machine's node: ours must not read it.
            "RABBITMQ_CONF_ENV_FILE": str(node_dir / "rabbitmq-env.conf"),
        }

    def _prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(20))
            cookie.chmod(0o400)
        for n in NODES:
            node_dir = self.node_dir(n)
            (node_dir / "log").mkdir(parents=True, exist_ok=True)
            (node_dir / "rabbitmq-env.conf").write_text("")
            (node_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
            # The nodes find each other when they boot (no join_cluster round trips).
            peers = "".join(
                f"cluster_formation.classic_config.nodes.{p} = {self.node(p)}\n" for p in NODES
            )
            (node_dir / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = 127.0.0.1:{self.amqp_port(n)}\n"
                f"management.tcp.ip = 127.0.0.1\n"
                f"management.tcp.port = {self.management_port(n)}\n"
                "cluster_formation.peer_discovery_backend = classic_config\n"
                f"{peers}"
            )

    def ctl(self, n: int, *args: str, timeout: float = 120.0) -> str:
        """``rabbitmqctl -n <node N> ARGS``; its output (raises if it fails)."""
        result = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node(n), *args],
            env=self._env(n),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {self.node(n)} {' '.join(args)}: {result.stderr}")
        return result.stdout

    def start_node(self, n: int) -> None:
        """Start node N's Erlang VM and RabbitMQ (detached); returns at once."""
        self._prepare()
        subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmq-server"), "-detached"],
            env=self._env(n),
            # Erlang writes its crash dumps (MnesiaCore.*) into the working directory.
            cwd=self.node_dir(n),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            timeout=60,
        )

    def wait_node(self, n: int, timeout: float = 120.0) -> None:
        """Until node N has booted and sees every running peer (its management API says so).

        Polled over HTTP: a ``rabbitmqctl`` call starts an Erlang VM (seconds on a busy machine).
        """
        wait_until(lambda: self.node_ready(n), what=f"{self.node(n)} to start", within=timeout)

    def node_ready(self, n: int) -> bool:
        return self.node(n) in self.running_nodes_of(n) and self.pid(n) is not None

    def pid(self, n: int) -> int | None:
        try:
            pid = int(self.pid_file(n).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def stop_app(self, n: int) -> None:
        """A graceful stop of RabbitMQ on node N (the VM stays, as in a maintenance)."""
        self.ctl(n, "stop_app")

    def start_app(self, n: int) -> None:
        self.ctl(n, "start_app")
        self.wait_node(n)

    def kill(self, n: int) -> None:
        """``kill -9`` of node N's Erlang VM: a crash, nothing flushed, nobody told."""
        pid = self.pid(n)
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        self.pid_file(n).unlink(missing_ok=True)

    def stop_node(self, n: int) -> None:
        """Stop node N's VM (graceful); a killed or stopped node is left as it is."""
        if self.pid(n) is None:
            return
        pid = self.pid(n)
        try:
            self.ctl(n, "stop", str(self.pid_file(n)))
        except (RuntimeError, subprocess.TimeoutExpired):
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        self.pid_file(n).unlink(missing_ok=True)

    def start_and_wait(self, n: int) -> None:
        self.start_node(n)
        self.wait_node(n)

    def restart_node(self, n: int) -> None:
        """Stop node N's VM gracefully, start it again and wait until it is back in the cluster."""
        self.stop_node(n)
        self.start_and_wait(n)

    # --- the cluster --------------------------------------------------------------------------

    def start(self) -> None:
        """The cluster (formed on first start) and its proxy; returns when all accept clients."""
        ensure_haproxy()
        self._prepare()
        for n in NODES:  # at once: a clustered node restarted alone waits for its peers
            if self.pid(n) is None:
                self.start_node(n)
        for n in NODES:
            self.wait_node(n)
        wait_until(lambda: len(self.running_nodes_of(1)) == len(NODES), what="the cluster to form")
        self.start_proxy()
        wait_until(self.proxy_ready, what="haproxy to forward to a node")

    def stop(self) -> None:
        """The proxy and every node; the data stays (``start`` brings the same cluster back)."""
        self.stop_proxy()
        for n in NODES:
            self.stop_node(n)

    def destroy(self) -> None:
        """Stop everything at once and remove the data (a test's cluster, at its end)."""
        self.stop_proxy()
        for n in NODES:  # nothing to keep: no graceful stop needed
            self.kill(n)
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def running_nodes_of(self, n: int) -> list[str]:
        """Nodes whose RabbitMQ app runs, as node N sees them (none if N does not answer)."""
        try:
            with httpx.Client(auth=CREDENTIALS, timeout=5) as client:
                url = f"http://127.0.0.1:{self.management_port(n)}/api/nodes"
                nodes = client.get(url).json()
        except (httpx.HTTPError, ValueError):
            return []
        return sorted(node["name"] for node in nodes if node.get("running"))

    def leader(self, vhost: str, queue: str) -> int:
        """Which node (1, 2 or 3) leads quorum queue ``queue`` of ``vhost``."""
        with httpx.Client(auth=CREDENTIALS, timeout=5) as client:
            response = client.get(
                f"{self.management_url}/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}"
            )
            response.raise_for_status()
            leader = str(response.json().get("leader") or response.json()["node"])
        return next(n for n in NODES if self.node(n) == leader)

    # --- the proxy ----------------------------------------------------------------------------

    @property
    def proxy_config(self) -> Path:
        return self.base_dir / "haproxy.cfg"

    @property
    def proxy_pid_file(self) -> Path:
        return self.base_dir / "haproxy.pid"

    def write_proxy_config(self) -> None:
        servers = "\n".join(f"    server {self.name}{n} 127.0.0.1:{{port{n}}} check" for n in NODES)
        amqp = servers.format(**{f"port{n}": self.amqp_port(n) for n in NODES})
        management = servers.format(**{f"port{n}": self.management_port(n) for n in NODES})
        self.proxy_config.write_text(
            "global\n"
            "    maxconn 4000\n"
            "defaults\n"
            "    mode tcp\n"
            "    timeout connect 2s\n"
            # AMQP connections live for hours; heartbeats (60 s) keep them busy enough.
            "    timeout client 3h\n"
            "    timeout server 3h\n"
            # A node is out after two failed checks 0.5 s apart, and its clients are cut at
            # once so that they reconnect to a live node instead of waiting for a heartbeat.
            "    default-server inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions\n"
            "    option redispatch\n"
            "    retries 3\n"
            f"listen amqp\n    bind 127.0.0.1:{self.base_port}\n    balance roundrobin\n"
            f"{amqp}\n"
            f"listen management\n    bind 127.0.0.1:{self.base_port + 1}\n    balance first\n"
            f"{management}\n"
        )

    def start_proxy(self) -> None:
        if self._proxy_pid() is not None:
            return
        self.write_proxy_config()
        subprocess.run(
            ["haproxy", "-D", "-f", str(self.proxy_config), "-p", str(self.proxy_pid_file)],
            check=True,
            stdin=subprocess.DEVNULL,
        )

    def stop_proxy(self) -> None:
        pid = self._proxy_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        self.proxy_pid_file.unlink(missing_ok=True)

    def _proxy_pid(self) -> int | None:
        try:
            pid = int(self.proxy_pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def proxy_ready(self) -> bool:
        try:
            with httpx.Client(auth=CREDENTIALS, timeout=5) as client:
                return client.get(f"{self.management_url}/api/overview").status_code == 200
        except httpx.HTTPError:
            return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(check: Callable[[], bool], *, what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def ensure_haproxy() -> None:
    """Install Debian's haproxy when missing (the way ``make up`` installs nginx)."""
    if shutil.which("haproxy") is not None:
        return
    if shutil.which("apt-get") is None:
        raise SystemExit("haproxy is missing and there is no apt-get to install it")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "haproxy"], env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rabbitmq-cluster", description=__doc__)
    parser.add_argument(
        "command",
        choices=[
            "start",
            "stop",
            "destroy",
            "status",
            "stop-app",
            "start-app",
            "kill",
            "start-node",
            "restart",
        ],
    )
    parser.add_argument("node", nargs="?", type=int, choices=NODES)
    args = parser.parse_args(argv)
    cluster = Cluster.from_env()
    if args.command in ("start", "stop", "destroy", "status"):
        if args.command == "start":
            cluster.start()
        elif args.command == "stop":
            cluster.stop()
        elif args.command == "destroy":
            cluster.destroy()
        print(f"AMQP {cluster.amqp_url}  management {cluster.management_url}")
        for n in NODES:
            print(f"{cluster.node(n)}: pid {cluster.pid(n)}, AMQP {cluster.amqp_port(n)}")
        return 0
    if args.node is None:
        parser.error(f"{args.command} needs a node: 1, 2 or 3")
    action = {
        "stop-app": cluster.stop_app,
        "start-app": cluster.start_app,
        "kill": cluster.kill,
        "start-node": cluster.start_and_wait,
        "restart": cluster.restart_node,
    }[args.command]
    action(args.node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
