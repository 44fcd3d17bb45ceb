"""Repository-level tests: deployment files and the platform run as a whole.

``running_platform`` starts the whole platform the way ``make up`` does (the same runner,
deploy/local/platformctl.py), but with databases, a RabbitMQ vhost, ports and a var dir of its
own, so it runs beside a developer's `make up` and other test runs. It is stopped, and its
databases and vhost dropped, at the end of the session.
"""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from servicekit import libpq_url
from servicekit.testing import Infrastructure, VhostAdmin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))
from platform_layout import LAYOUT  # noqa: E402  (deploy/platform.toml, from deploy/local)

RUNNER = ROOT / "deploy" / "local" / "platformctl.py"


@dataclass
class RunningPlatform:
    gateway_url: str
    var_dir: Path
    env: dict[str, str] = field(repr=False)

    def run(self, service: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        """A service's command by hand (``backup run-now``), with this platform's settings."""
        return subprocess.run(
            [sys.executable, str(RUNNER), "run", service, *arguments],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    @property
    def port_offset(self) -> int:
        return int(self.env["PLATFORM_PORT_OFFSET"])

    def health_port(self, service: str) -> int:
        """Where a service's worker answers /readyz and /metrics on this platform."""
        return LAYOUT.service(service).health_port + self.port_offset

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "notifier" / "mail"

    @property
    def backup_dir(self) -> Path:
        return self.var_dir / "backup" / "backups"


def ports_free(offset: int) -> bool:
    """Whether every port of a platform at ``offset`` can be listened on.

    Offsets stay below the ephemeral range (32768 and up), where outgoing connections could
    take a port between this check and the start.
    """
    for port in LAYOUT.ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
            try:
                sock.bind(("127.0.0.1", port + offset))
            except OSError:
                return False
    return True


def _server_url(database_url: str) -> str:
    return urlunsplit(urlsplit(database_url)._replace(path="/"))


@contextmanager
def platform_on(
    infrastructure: Infrastructure,
    vhost_admin: VhostAdmin,
    *,
    name: str,
    tmp_path_factory: pytest.TempPathFactory,
    settings: dict[str, str] | None = None,
) -> Iterator[RunningPlatform]:
    """The whole platform on ``vhost_admin``'s broker (vhost and databases named ``name``),
    with extra service ``settings``; stopped and its databases and vhost dropped afterwards."""
    vhost = f"{name}_platform"
    db_prefix = f"{name}_"
    offset = next(o for o in range(10000, 23000, 211) if ports_free(o))
    var_dir = tmp_path_factory.mktemp("platform") / "var"
    # Where `migrate` sets the queue policies: a container's management port is mapped anywhere.
    management = {
        f"{service.env_prefix}AMQP_MANAGEMENT_URL": vhost_admin.management_url
        for service in LAYOUT.services
    }
    env = {
        **os.environ,
        **management,
        **(settings or {}),
        "PLATFORM_VAR_DIR": str(var_dir),
        "PLATFORM_DB_BASE_URL": _server_url(infrastructure.admin_database_url),
        "PLATFORM_DB_PREFIX": db_prefix,
        "PLATFORM_AMQP_URL": vhost_admin.create(vhost),
        "PLATFORM_PORT_OFFSET": str(offset),
        "PLATFORM_SKIP_INFRA": "1",  # the test fixtures provide the servers
        "PLATFORM_START_TIMEOUT": "90",
    }
    try:
        up = subprocess.run(
            [sys.executable, str(RUNNER), "up"], env=env, capture_output=True, text=True
        )
        if up.returncode != 0:
            pytest.fail(f"the platform did not start:\n{up.stdout}\n{up.stderr}")
        yield RunningPlatform(
            gateway_url=f"http://127.0.0.1:{LAYOUT.gateway_port + offset}", var_dir=var_dir, env=env
        )
    finally:
        subprocess.run([sys.executable, str(RUNNER), "down"], env=env, capture_output=True)
        vhost_admin.delete(vhost)
        with psycopg.connect(libpq_url(infrastructure.admin_database_url), autocommit=True) as c:
            names = c.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (db_prefix,)
            ).fetchall()
            for (database,) in names:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                c.execute(drop.format(sql.Identifier(database)))


@pytest.fixture(scope="session")
def running_platform(
    infrastructure: Infrastructure,
    vhost_admin: VhostAdmin,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningPlatform]:
    with platform_on(
        infrastructure, vhost_admin, name=f"t_{run_id}", tmp_path_factory=tmp_path_factory
    ) as running:
        yield running
