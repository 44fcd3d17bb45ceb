"""compose.yaml's cluster profile (rabbitmq-1..3) as one compose project of a test run.

It offers what the cluster smoke scenario needs (reliability/cluster_smoke.py's
``SmokeCluster``) the way deploy/local/rabbitmq_cluster.py's ``Cluster`` does, without a proxy:
a client gets every node's address and goes on with the next when its node dies. Secrets (the
Erlang cookie, the password) and ports are the run's own, so it starts beside anyone's.
"""

import json
import secrets
import subprocess
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import docker
import httpx
from docker.models.containers import Container

from containers.docker_checks import free_port
from servicekit.testing import wait_until

ROOT = Path(__file__).resolve().parents[2]
NODES = (1, 2, 3)
USER = "platform"
#: compose reads the whole file whatever the profile: the platform's required variables must be
#: set, though nothing of the cluster uses them.
UNUSED_BY_THE_CLUSTER = {
    "POSTGRES_PASSWORD": "unused",
    "AUTH_SIGNING_KEY_PEM": "",
    "RECIPES_IMAGE_URL_SECRET": "unused",
    "NOTIFIER_UNSUBSCRIBE_SECRET": "unused",
    "PUBLIC_BASE_URL": "http://127.0.0.1",
}


def service(n: int) -> str:
    return f"rabbitmq-{n}"


def node_name(n: int) -> str:
    """The RabbitMQ node name of service rabbitmq-N (its host name is the service's)."""
    return f"rabbit@{service(n)}"


class ComposeCluster:
    """The three nodes of one compose project: start, inspect, kill, tear down."""

    def __init__(self, engine: docker.DockerClient, project: str, env: dict[str, str]) -> None:
        self._engine = engine
        self._project = project
        self._env = env
        self._auth = (USER, self._env["RABBITMQ_PASSWORD"])

    @classmethod
    def for_run(
        cls, engine: docker.DockerClient, project: str, base_env: dict[str, str]
    ) -> "ComposeCluster":
        """A project with a generated cookie and password, on free loopback ports."""
        ports = {f"RABBITMQ_CLUSTER_PORT_{n}": str(free_port()) for n in NODES}
        ports |= {f"RABBITMQ_CLUSTER_MANAGEMENT_PORT_{n}": str(free_port()) for n in NODES}
        env = {
            **base_env,
            **UNUSED_BY_THE_CLUSTER,
            **ports,
            "RABBITMQ_USER": USER,
            "RABBITMQ_PASSWORD": secrets.token_hex(16),
            "RABBITMQ_ERLANG_COOKIE": secrets.token_hex(20),
        }
        return cls(engine, project, env)

    # --- the project --------------------------------------------------------------------------

    def compose(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        files = ["-f", str(ROOT / "compose.yaml")]
        return subprocess.run(
            ["docker-compose", "-p", self._project, *files, "--profile", "cluster", *arguments],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=600,
            check=check,
        )

    def up(self) -> None:
        """Start the three nodes; returns when all are healthy and form one cluster."""
        started = self.compose("up", "-d", *(service(n) for n in NODES), check=False)
        assert started.returncode == 0, started.stderr
        for n in NODES:
            wait_until(partial(self.healthy, n), within=180, what=f"{service(n)} healthy")
        wait_until(lambda: len(self.running_nodes(1)) == len(NODES), within=120, what="one cluster")

    def down(self) -> None:
        """Containers, networks and volumes of the project, whatever state they are in."""
        self.compose("down", "-v", "--remove-orphans", "--timeout", "5", check=False)

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "40", check=False).stdout

    # --- the nodes ----------------------------------------------------------------------------

    def container(self, n: int) -> Container:
        labels = [
            f"com.docker.compose.project={self._project}",
            f"com.docker.compose.service={service(n)}",
        ]
        (found,) = self._engine.containers.list(all=True, filters={"label": labels})
        return found

    def healthy(self, n: int) -> bool:
        state = self.container(n).attrs["State"]
        return bool(state.get("Health", {}).get("Status") == "healthy")

    def running(self, n: int) -> bool:
        return bool(self.container(n).attrs["State"]["Running"])

    def cluster_status(self, n: int) -> dict[str, Any]:
        """``rabbitmq-diagnostics cluster_status`` on node N, as its JSON says it."""
        result = self.container(n).exec_run(
            ["rabbitmq-diagnostics", "-q", "cluster_status", "--formatter", "json"], demux=True
        )
        stdout = (result.output[0] or b"").decode()
        assert result.exit_code == 0, stdout
        # The CLI may warn on a line of its own before the document.
        document = next(line for line in stdout.splitlines() if line.startswith("{"))
        status: dict[str, Any] = json.loads(document)
        return status

    def running_nodes(self, n: int) -> list[str]:
        """Nodes whose RabbitMQ app runs, as node N's management API sees them."""
        try:
            with httpx.Client(auth=self._auth, timeout=5) as client:
                nodes = client.get(f"{self._management_base(n)}/api/nodes").json()
        except (httpx.HTTPError, ValueError):
            return []
        return sorted(node["name"] for node in nodes if node.get("running"))

    def kill(self, n: int) -> None:
        """``docker kill`` (SIGKILL) of node N's container: a crash, nothing flushed."""
        self.container(n).kill()
        wait_until(lambda: not self.running(n), within=30, what=f"{service(n)} gone")

    def start_and_wait(self, n: int) -> None:
        """Start node N's container again; returns once it is back in the cluster."""
        self.container(n).start()
        wait_until(
            lambda: node_name(n) in self.running_nodes(n), within=180, what=f"{service(n)} back"
        )

    # --- what clients use --------------------------------------------------------------------

    def _port(self, kind: str, n: int) -> str:
        return self._env[f"RABBITMQ_CLUSTER_{kind}PORT_{n}"]

    def _management_base(self, n: int) -> str:
        return f"http://127.0.0.1:{self._port('MANAGEMENT_', n)}"

    def _live_node(self) -> int:
        return next(n for n in NODES if self.running(n))

    @property
    def management_url(self) -> str:
        """A running node's management API, with the credentials in it."""
        credentials = f"{quote(USER, safe='')}:{quote(self._auth[1], safe='')}"
        return self._management_base(self._live_node()).replace("//", f"//{credentials}@", 1)

    def amqp_urls(self, vhost: str) -> list[str]:
        credentials = f"{quote(USER, safe='')}:{quote(self._auth[1], safe='')}"
        return [
            f"amqp://{credentials}@127.0.0.1:{self._port('', n)}/{quote(vhost, safe='')}"
            for n in NODES
        ]

    def create_vhost(self, vhost: str) -> None:
        base = f"{self._management_base(self._live_node())}/api"
        with httpx.Client(auth=self._auth, timeout=10) as client:
            client.put(f"{base}/vhosts/{quote(vhost, safe='')}").raise_for_status()
            client.put(
                f"{base}/permissions/{quote(vhost, safe='')}/{quote(USER, safe='')}",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ).raise_for_status()

    def queue(self, vhost: str, queue: str) -> dict[str, Any]:
        """What a running node's management API says of ``queue`` of ``vhost``."""
        base = f"{self._management_base(self._live_node())}/api"
        with httpx.Client(auth=self._auth, timeout=5) as client:
            response = client.get(f"{base}/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}")
            response.raise_for_status()
            found: dict[str, Any] = response.json()
        return found

    def leader(self, vhost: str, queue: str) -> int:
        found = self.queue(vhost, queue)
        leader = str(found.get("leader") or found["node"])
        return next(n for n in NODES if node_name(n) == leader)
