"""Pytest plugin: real PostgreSQL databases and real RabbitMQ vhosts, isolated per test run.

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

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import httpx
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from contracts import EXCHANGE_NAME
from servicekit.bus import RetryPolicy, dead_letter_queue_name, retry_queue_name
from servicekit.db import libpq_url
from servicekit.settings import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER
from servicekit.tokens import TokenVerifier
from servicekit.topology import consumer_queue_policy, policy_name

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


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


@pytest.fixture(scope="session")
def infrastructure(request: pytest.FixtureRequest) -> Iterator[Infrastructure]:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def announce(line: str) -> None:
        if reporter is not None:  # shown even with -q, so CI's log says which servers ran
            reporter.write_line(line)

    if _docker_reachable():
        with _containers(announce) as infra:
            yield infra
    else:
        yield _local()


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


@pytest.fixture(scope="session")
def make_database(infrastructure: Infrastructure, run_id: str) -> Iterator[Callable[[str], str]]:
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
        with httpx.Client(auth=self._auth, timeout=10) as client:
            response = client.get(f"{self._base}/queues/{quote(vhost, safe='')}")
            response.raise_for_status()
            body: list[dict[str, Any]] = response.json()
            return body

    def policy(self, vhost: str, name: str) -> dict[str, Any]:
        with httpx.Client(auth=self._auth, timeout=10) as client:
            response = client.get(
                f"{self._base}/policies/{quote(vhost, safe='')}/{quote(name, safe='')}"
            )
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

    def queue(self, vhost: str, queue: str) -> dict[str, object]:
        with httpx.Client(auth=self._auth, timeout=10) as client:
            response = client.get(
                f"{self._base}/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}"
            )
            response.raise_for_status()
            body: dict[str, object] = response.json()
            return body


@pytest.fixture(scope="session")
def vhost_admin(infrastructure: Infrastructure) -> VhostAdmin:
    return VhostAdmin(infrastructure)


@dataclass(frozen=True)
class Vhost:
    name: str
    url: str


@pytest.fixture
def vhost(vhost_admin: VhostAdmin, run_id: str) -> Iterator[Vhost]:
    """A fresh RabbitMQ vhost for one test, deleted afterwards."""
    name = f"t_{run_id}_{uuid.uuid4().hex[:8]}"
    url = vhost_admin.create(name)
    yield Vhost(name=name, url=url)
    vhost_admin.delete(name)


@pytest.fixture
def amqp_url(vhost: Vhost) -> str:
    return vhost.url


@pytest.fixture
def management_url(vhost_admin: VhostAdmin) -> str:
    """The broker's management API, credentials included: ``declare_queues`` sets policies there."""
    return vhost_admin.management_url


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


class TokenFactory:
    """Signs access tokens the way the auth service does, for other services' tests.

    ``verifier()`` trusts only this factory's public JWK Set, so a test exercises the same
    verification path as production without the auth service running.
    """

    def __init__(
        self,
        *,
        issuer: str = DEFAULT_JWT_ISSUER,
        audience: str = DEFAULT_JWT_AUDIENCE,
        kid: str = "test-key",
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = kid
        self._key = Ed25519PrivateKey.generate()

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self._key.public_key()))
        public.update(kid=self.kid, use="sig", alg="EdDSA")
        return {"keys": [public]}

    def verifier(self) -> TokenVerifier:
        jwks = self.jwks()

        async def fetch() -> dict[str, Any]:
            return jwks

        return TokenVerifier(fetch, issuer=self.issuer, audience=self.audience)

    def access_token(self, *, user_id: int, username: str, role: str, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "username": username,
            "role": role,
            "typ": "access",
            "iat": now,
            "exp": now + 900,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.kid})

    def headers(self, *, user_id: int, username: str, role: str) -> dict[str, str]:
        token = self.access_token(user_id=user_id, username=username, role=role)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def token_factory() -> TokenFactory:
    return TokenFactory()


class TcpProxy:
    """A loopback TCP proxy a test can cut and restore, to make a server unreachable."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.blocked = False
        self.port = 0

    async def start(self) -> "TcpProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{self.port}"))

    async def cut(self) -> None:
        """Drop every open connection and refuse new ones until ``restore``."""
        self.blocked = True
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def restore(self) -> None:
        self.blocked = False

    async def stop(self) -> None:
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)


@pytest.fixture
async def amqp_proxy(infrastructure: Infrastructure) -> AsyncIterator[TcpProxy]:
    """A cuttable proxy in front of the broker."""
    parts = urlsplit(infrastructure.amqp_url)
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672).start()
    yield proxy
    await proxy.stop()


async def routed_keys(amqp_url: str, queue: str, routing_keys: list[str]) -> set[str]:
    """Publish one empty message per routing key; the keys of those that reached ``queue``."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()  # publisher confirms: queued once published
        exchange = await channel.get_exchange(EXCHANGE_NAME)
        for key in routing_keys:
            await exchange.publish(aio_pika.Message(b"{}"), routing_key=key, timeout=10)
        declared = await channel.get_queue(queue)
        received: set[str] = set()
        while (message := await declared.get(fail=False, timeout=10)) is not None:
            received.add(str(message.routing_key))
            await message.ack()
        return received


def queue_arguments(vhost_admin: VhostAdmin, vhost: Vhost, queue: str) -> dict[str, Any]:
    """The ``x-`` arguments a queue was declared with, from the management API."""
    found = vhost_admin.queue(vhost.name, queue)["arguments"]
    assert isinstance(found, dict)
    return found


def assert_queue_topology(
    vhost_admin: VhostAdmin, vhost: Vhost, queue: str, policy: RetryPolicy
) -> None:
    """``queue`` and its delay and dead-letter queues are quorum queues that dead-letter
    at-least-once, and its policy carries the delivery limit (what ``migrate`` leaves)."""
    found = vhost_admin.queue(vhost.name, queue)
    arguments = found["arguments"]
    assert isinstance(arguments, dict)
    assert arguments["x-queue-type"] == "quorum"
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    # The policy itself: the queue's own view of it follows a few seconds later (statistics).
    applied = vhost_admin.policy(vhost.name, policy_name(queue))
    assert applied["pattern"] == f"^{re.escape(queue)}$"
    assert applied["definition"] == consumer_queue_policy(policy)
    for step in range(len(policy.delays)):
        retry = queue_arguments(vhost_admin, vhost, retry_queue_name(queue, step))
        assert retry["x-queue-type"] == "quorum"
        assert retry["x-dead-letter-routing-key"] == queue
        assert retry["x-dead-letter-strategy"] == "at-least-once"
    dlq = queue_arguments(vhost_admin, vhost, dead_letter_queue_name(queue))
    assert dlq["x-queue-type"] == "quorum"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that run a ``main()``: it points the root logger at the test's captured output."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
