"""Looking at a running platform from outside: its databases, queues, metrics and readiness.

Everything here reads; nothing changes the platform except ``sign_in`` and ``register`` (which go
through the gateway like any client).
"""

import importlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import psycopg
from conftest import RunningPlatform
from platform_layout import LAYOUT

from servicekit import libpq_url
from servicekit.testing import VhostAdmin

PASSWORD = "Gooseberry-Crumble-42"
#: Every consumer queue of the platform and the worker that serves it (deploy/platform.toml).
CONSUMER_QUEUES = {s.queue: s.name for s in LAYOUT.services if s.queue is not None}
#: Marks the messages the poison test publishes on purpose (the accounting allows only these).
POISON_HEADER = "x-reliability-poison"


@dataclass
class Platform:
    """The running platform and the ways to look inside it."""

    running: RunningPlatform
    admin: VhostAdmin
    #: The RabbitMQ management API (``.../api``) and its credentials.
    management_api: str
    credentials: tuple[str, str]

    @property
    def gateway_url(self) -> str:
        return self.running.gateway_url

    @property
    def offset(self) -> int:
        return int(self.running.env["PLATFORM_PORT_OFFSET"])

    @property
    def amqp_url(self) -> str:
        return self.running.env["PLATFORM_AMQP_URL"]

    @property
    def vhost(self) -> str:
        return unquote(urlsplit(self.amqp_url).path.lstrip("/"))

    def database_url(self, service: str) -> str:
        base = self.running.env["PLATFORM_DB_BASE_URL"].rstrip("/") + "/"
        return libpq_url(f"{base}{self.running.env['PLATFORM_DB_PREFIX']}{service}")

    def query(self, service: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """One statement on a service's database; retried while the server refuses clients
        (it is shared: another test run may hold every connection for a moment)."""
        for attempt in range(20):
            try:
                with psycopg.connect(self.database_url(service), connect_timeout=10) as conn:
                    return conn.execute(statement, params).fetchall()
            except psycopg.OperationalError:
                if attempt == 19:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def readiness_urls(self) -> dict[str, str]:
        """Every process's /readyz, by process name (as platformctl names them)."""
        return {
            f"{s.name}-{process}": f"http://127.0.0.1:{s.port_of(process) + self.offset}/readyz"
            for s in LAYOUT.services
            for process in s.processes
        }

    def ready(self, url: str) -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def all_ready(self) -> bool:
        return all(self.ready(url) for url in self.readiness_urls().values())

    def consumed(self, service: str, event_type: str, outcome: str = "handled") -> float:
        """How many events of a type a worker has handled, from its /metrics."""
        port = self.running.health_port(service)
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return -1.0
        labels = (
            f'queue="{LAYOUT.service(service).queue}"',
            f'event_type="{event_type}"',
            f'outcome="{outcome}"',
        )
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("events_consumed_total{") and all(lb in line for lb in labels)
        )

    # --- queues -------------------------------------------------------------------------------

    def _management(self) -> httpx.Client:
        return httpx.Client(base_url=self.management_api, auth=self.credentials, timeout=10)

    def queues(self) -> dict[str, int]:
        """Messages (ready + unacknowledged) in every queue of the platform's vhost."""
        with self._management() as client:
            found = client.get(f"/queues/{quote(self.vhost, safe='')}").json()
        return {q["name"]: int(q.get("messages", 0)) for q in found}

    def connections(self) -> int:
        """Client connections open on the platform's vhost."""
        with self._management() as client:
            found = client.get(f"/vhosts/{quote(self.vhost, safe='')}/connections").json()
        return len(found)

    def dead_letters(self, queue: str) -> list[dict[str, Any]]:
        """The messages of ``queue``'s DLQ (requeued: reading them leaves them there)."""
        path = f"/queues/{quote(self.vhost, safe='')}/{quote(queue + '.dlq', safe='')}/get"
        with self._management() as client:
            response = client.post(
                path,
                json={"count": 1000, "ackmode": "ack_requeue_true", "encoding": "auto"},
            )
            response.raise_for_status()
            found: list[dict[str, Any]] = response.json()
            return found

    def unexpected_dead_letters(self) -> dict[str, int]:
        """Dead letters the poison test did not put there, per consumer queue."""
        return {
            queue: sum(
                1
                for m in self.dead_letters(queue)
                if POISON_HEADER not in (m["properties"].get("headers") or {})
            )
            for queue in CONSUMER_QUEUES
        }

    def drained(self) -> bool:
        """No message waits in a consumer or delay queue and no outbox holds a row."""
        busy = {
            name: count
            for name, count in self.queues().items()
            if count and not name.endswith(".dlq")
        }
        if busy:
            return False
        return all(
            self.query(s, "SELECT count(*) FROM outbox_messages")[0][0] == 0
            for s in ("auth", "recipes", "media", "notifier", "backup")
        )


# --- clients --------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def sign_in(gateway: httpx.Client, username: str, password: str = PASSWORD) -> httpx.Response:
    """POST /api/auth/token/, waiting out the gateway's rate limit (5 r/s) when it answers 429,
    and a moment of 5xx (the shared database server may refuse clients for a moment)."""
    for _ in range(40):
        response = gateway.post(
            "/api/auth/token/", json={"username": username, "password": password}
        )
        limited = response.status_code == 429 and response.json().get("code") == "rate_limited"
        if not limited and response.status_code < 500:
            return response
        time.sleep(0.5)
    return response


@dataclass
class Account:
    user_id: int
    username: str
    email: str
    role: str
    token: str = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register(gateway: httpx.Client, role: str, *, prefix: str | None = None) -> Account:
    name = unique(prefix or role)
    email = f"{name}@example.com"
    for _ in range(10):
        created = gateway.post(
            "/api/auth/register/",
            json={"username": name, "password": PASSWORD, "email": email, "role": role},
        )
        if created.status_code < 500:
            break
        time.sleep(0.5)
    assert created.status_code == 201, created.text
    token = sign_in(gateway, name)
    assert token.status_code == 200, token.text
    return Account(created.json()["id"], name, email, role, token.json()["access"])


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client normalises ``..`` away): status and body."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request.encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# --- readiness during a fault -----------------------------------------------------------------


@dataclass
class ReadinessLog:
    """Samples of every process's /readyz taken while a fault lasts."""

    samples: int = 0
    #: Per process: how many samples said not ready (503 or no answer).
    not_ready: dict[str, int] = field(default_factory=dict)

    def saw_outage(self, name: str) -> bool:
        return self.not_ready.get(name, 0) > 0


@contextmanager
def sampling_readiness(platform: Platform, interval: float = 0.2) -> Iterator[ReadinessLog]:
    log = ReadinessLog()
    urls = platform.readiness_urls()
    stop = threading.Event()

    def sample() -> None:
        with httpx.Client(timeout=1.5) as client:
            while not stop.is_set():
                for name, url in urls.items():
                    try:
                        ok = client.get(url).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    if not ok:
                        log.not_ready[name] = log.not_ready.get(name, 0) + 1
                log.samples += 1
                stop.wait(interval)

    thread = threading.Thread(target=sample, name="readiness-sampler", daemon=True)
    thread.start()
    try:
        yield log
    finally:
        stop.set()
        thread.join(timeout=10)


#: Connections a process holds besides its pool: the outbox relay's ``LISTEN``.
LISTEN_CONNECTIONS = 1
#: The backup worker's export holds one more while it runs (README, "Connection budget").
EXPORT_CONNECTIONS = 1


def connection_budget(platform: Platform) -> int:
    """The most PostgreSQL connections the platform may hold, as README's "Connection budget"
    counts it: every process its pool plus its ``LISTEN``; an API runs ``API_PROCESSES``
    processes (default one per core); the backup worker one more while exporting."""
    cores = len(os.sched_getaffinity(0))
    total = EXPORT_CONNECTIONS
    for service in LAYOUT.services:
        settings = importlib.import_module(f"{service.name}.settings").Settings
        pool = int(
            platform.running.env.get(
                f"{service.env_prefix}DATABASE_POOL_SIZE",
                settings.model_fields["database_pool_size"].default,
            )
        )
        processes = 1  # the worker
        if service.has_api:
            configured = platform.running.env.get(f"{service.env_prefix}API_PROCESSES")
            processes += int(configured) if configured else cores
        total += processes * (pool + LISTEN_CONNECTIONS)
    return total


@dataclass
class ConnectionLog:
    """PostgreSQL connections to the platform's databases, sampled while a scenario runs."""

    budget: int
    peak: int = 0
    peak_by_database: dict[str, int] = field(default_factory=dict)
    samples: int = 0


@contextmanager
def sampling_connections(platform: Platform, interval: float = 0.25) -> Iterator[ConnectionLog]:
    """Counts ``pg_stat_activity`` rows of the platform's databases (its own sampling
    connection is to ``postgres``, not counted); a sample the server refuses is skipped."""
    log = ConnectionLog(budget=connection_budget(platform))
    databases = {
        f"{platform.running.env['PLATFORM_DB_PREFIX']}{s.name}": s.name for s in LAYOUT.services
    }
    admin = libpq_url(platform.running.env["PLATFORM_DB_BASE_URL"].rstrip("/") + "/postgres")
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as connection:
                    while not stop.is_set():
                        rows = connection.execute(
                            "SELECT datname, count(*) FROM pg_stat_activity"
                            " WHERE datname = ANY(%s) GROUP BY datname",
                            (list(databases),),
                        ).fetchall()
                        by_service = {databases[name]: int(count) for name, count in rows}
                        log.peak = max(log.peak, sum(by_service.values()))
                        for name, count in by_service.items():
                            log.peak_by_database[name] = max(
                                log.peak_by_database.get(name, 0), count
                            )
                        log.samples += 1
                        stop.wait(interval)
            except psycopg.Error:
                stop.wait(interval)  # the server restarting (a fault of the scenario)

    thread = threading.Thread(target=sample, name="connection-sampler", daemon=True)
    thread.start()
    try:
        yield log
    finally:
        stop.set()
        thread.join(timeout=10)
