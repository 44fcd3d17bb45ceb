"""The servers tests run against: real PostgreSQL databases and real RabbitMQ vhosts, per run.

With a reachable Docker engine (``DOCKER_HOST``, else the system socket) each test session starts
its own PostgreSQL and RabbitMQ containers with testcontainers, from ``POSTGRES_IMAGE`` and
``RABBITMQ_IMAGE`` (the official images unless set; ``scripts/ensure-docker`` names images it
built where no registry is reachable). ``TESTS_USE_DOCKER=never`` always uses the local servers,
``always`` fails rather than fall back to them (CI and ``make test-containers``). Otherwise the
servers at
``DATABASE_URL`` (an admin URL, default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
and ``AMQP_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``) are used; the RabbitMQ
management API (``RABBITMQ_MANAGEMENT_URL``, default port 15672 on the AMQP host) creates and
deletes the vhosts. Every database and vhost name carries this run's id, and all are dropped at
the end, so concurrent runs and leftovers never interfere.
"""

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

from servicekit._db import libpq_url
from servicekit.defaults import DEFAULT_AMQP_URL

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Infrastructure:
    admin_database_url: str
    amqp_url: str
    management_url: str


DEFAULT_POSTGRES_IMAGE = "postgres:16-alpine"
DEFAULT_RABBITMQ_IMAGE = "rabbitmq:3.13-management-alpine"
AMQP_PORT = 5672
MANAGEMENT_PORT = 15672
#: The broker container's user (the official image's default, and the local image's).
BROKER_USER = ("guest", "guest")


def _docker_reachable() -> bool:
    mode = os.environ.get("TESTS_USE_DOCKER", "auto")
    if mode == "never":
        return False
    if _engine_answers(os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"):
        return True
    if mode == "always":
        raise RuntimeError("TESTS_USE_DOCKER=always but no Docker engine answers")
    return False


def _engine_answers(docker_host: str) -> bool:
    """``GET /_ping`` on the engine at ``docker_host`` (unix:// or tcp://, as DOCKER_HOST says).

    A raw request rather than the docker client: the client leaks its socket when no engine
    answers, which pytest's ResourceWarning check turns into an error.
    """
    parts = urlsplit(docker_host)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            try:
                sock.connect(parts.path)
            except OSError:
                sock.close()
                raise
        elif parts.scheme == "tcp":
            sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 2375), 5)
        else:
            return True  # ssh:// and the like: configured on purpose, testcontainers will tell
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False


def _broker_answers(host: str, amqp_port: int, management_url: str) -> bool:
    """AMQP answers the protocol header with Connection.Start, and the management API is up."""
    try:
        with socket.create_connection((host, amqp_port), timeout=5) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            if sock.recv(1) != b"\x01":  # a method frame
                return False
        overview = httpx.get(f"{management_url}/api/overview", auth=BROKER_USER, timeout=5)
        return overview.status_code == 200
    except (OSError, httpx.HTTPError):
        return False


@contextlib.contextmanager
def _containers(announce: Callable[[str], None]) -> Iterator[Infrastructure]:
    # RabbitMqContainer's own readiness probe (pika) leaves failed connections to be collected
    # later, which pytest reports as unraisable exceptions: a plain container, waited on here.
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer

    pg_image = os.environ.get("POSTGRES_IMAGE", DEFAULT_POSTGRES_IMAGE)
    mq_image = os.environ.get("RABBITMQ_IMAGE", DEFAULT_RABBITMQ_IMAGE)
    started = time.monotonic()
    broker = (
        DockerContainer(mq_image)
        .with_env("RABBITMQ_DEFAULT_USER", BROKER_USER[0])
        .with_env("RABBITMQ_DEFAULT_PASS", BROKER_USER[1])
        .with_exposed_ports(AMQP_PORT, MANAGEMENT_PORT)
    )
    with PostgresContainer(pg_image, driver="psycopg") as pg, broker as mq:
        host = mq.get_container_host_ip()
        amqp_port = int(mq.get_exposed_port(AMQP_PORT))
        management_url = f"http://{host}:{mq.get_exposed_port(MANAGEMENT_PORT)}"
        deadline = time.monotonic() + 120
        while not _broker_answers(host, amqp_port, management_url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ from {mq_image} did not start:\n{mq.get_logs()}")
            time.sleep(0.5)
        user, password = BROKER_USER
        announce(
            f"testcontainers: PostgreSQL {pg_image} at {host}:{pg.get_exposed_port(5432)},"
            f" RabbitMQ {mq_image} at {host}:{amqp_port}"
            f" (started in {time.monotonic() - started:.1f} s)"
        )
        yield Infrastructure(
            admin_database_url=pg.get_connection_url(),
            amqp_url=f"amqp://{user}:{password}@{host}:{amqp_port}/",
            management_url=management_url,
        )


def _local() -> Infrastructure:
    amqp_url = os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    host = urlsplit(amqp_url).hostname or "127.0.0.1"
    return Infrastructure(
        admin_database_url=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        amqp_url=amqp_url,
        management_url=os.environ.get("RABBITMQ_MANAGEMENT_URL", f"http://{host}:15672"),
    )


@contextlib.contextmanager
def start_servers(announce: Callable[[str], None]) -> Iterator[Infrastructure]:
    """Containers when a Docker engine answers (``TESTS_USE_DOCKER``), else the local servers."""
    if _docker_reachable():
        with _containers(announce) as infra:
            yield infra
    else:
        yield _local()


def new_run_id() -> str:
    """What every database and vhost name of one test run carries."""
    return uuid.uuid4().hex[:10]


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


@contextlib.contextmanager
def database_factory(infrastructure: Infrastructure, run_id: str) -> Iterator[Callable[[str], str]]:
    """Factory: a new empty database named after this run; all are dropped at the end."""
    admin = libpq_url(infrastructure.admin_database_url)
    created: list[str] = []

    def create(label: str) -> str:
        name = f"t_{run_id}_{label}_{len(created)}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return with_database(infrastructure.admin_database_url, name)

    yield create
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in created:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class VhostAdmin:
    """Creates and deletes vhosts through the RabbitMQ management API."""

    def __init__(self, infrastructure: Infrastructure) -> None:
        parts = urlsplit(infrastructure.amqp_url)
        self._auth = (parts.username or "guest", parts.password or "guest")
        self._user = self._auth[0]
        self._base = infrastructure.management_url.rstrip("/") + "/api"
        self._amqp_url = infrastructure.amqp_url

    @property
    def management_url(self) -> str:
        """The management API with this user's credentials in it, as ``migrate`` is given it
        (a container's management port is mapped anywhere, never the default of the AMQP host)."""
        parts = urlsplit(self._base.removesuffix("/api"))
        netloc = f"{quote(self._auth[0], safe='')}:{quote(self._auth[1], safe='')}@{parts.netloc}"
        return urlunsplit(parts._replace(netloc=netloc))

    def create(self, vhost: str) -> str:
        with httpx.Client(auth=self._auth, timeout=10) as client:
            client.put(f"{self._base}/vhosts/{quote(vhost, safe='')}").raise_for_status()
        self.grant_access(vhost)
        return with_vhost(self._amqp_url, vhost)

    def grant_access(self, vhost: str) -> None:
        with httpx.Client(auth=self._auth, timeout=10) as client:
            client.put(
                self._permissions(vhost), json={"configure": ".*", "write": ".*", "read": ".*"}
            ).raise_for_status()

    def revoke_access(self, vhost: str) -> None:
        """Refuse the user's next connections to ``vhost``: an outage that lasts until granted."""
        with httpx.Client(auth=self._auth, timeout=10) as client:
            client.delete(self._permissions(vhost)).raise_for_status()

    def _permissions(self, vhost: str) -> str:
        return f"{self._base}/permissions/{quote(vhost, safe='')}/{quote(self._user, safe='')}"

    def delete(self, vhost: str) -> None:
        with httpx.Client(auth=self._auth, timeout=10) as client:
            client.delete(f"{self._base}/vhosts/{quote(vhost, safe='')}")

    def close_connections(self, vhost: str) -> int:
        """Force-close every client connection of ``vhost`` (what a broker failover looks like)."""
        with httpx.Client(auth=self._auth, timeout=10) as client:
            conns = client.get(f"{self._base}/vhosts/{quote(vhost, safe='')}/connections").json()
            for conn in conns:
                client.delete(
                    f"{self._base}/connections/{quote(conn['name'], safe='')}",
                    headers={"X-Reason": "test closes connections"},
                )
        return len(conns)

    def queues(self, vhost: str) -> list[dict[str, Any]]:
        body: list[dict[str, Any]] = self._get("queues", vhost)
        return body

    def policy(self, vhost: str, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self._get("policies", vhost, name)
        return body

    def queue(self, vhost: str, queue: str) -> dict[str, object]:
        body: dict[str, object] = self._get("queues", vhost, queue)
        return body

    def _get(self, resource: str, *names: str) -> Any:
        """``GET /api/<resource>/<name>/...`` (each name quoted), the decoded JSON body."""
        path = "/".join([resource, *(quote(name, safe="") for name in names)])
        with httpx.Client(auth=self._auth, timeout=10) as client:
            response = client.get(f"{self._base}/{path}")
            response.raise_for_status()
            return response.json()


@dataclass(frozen=True)
class Vhost:
    name: str
    url: str


@contextlib.contextmanager
def fresh_vhost(vhost_admin: VhostAdmin, run_id: str) -> Iterator[Vhost]:
    """A new RabbitMQ vhost named after this run, deleted afterwards."""
    name = f"t_{run_id}_{uuid.uuid4().hex[:8]}"
    url = vhost_admin.create(name)
    yield Vhost(name=name, url=url)
    vhost_admin.delete(name)


def truncate_all(database_url: str) -> None:
    """Empty every table but Alembic's (fast reset between tests sharing one database)."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )
