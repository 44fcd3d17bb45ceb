"""The pytest plugin every package's tests get (entry point ``pytest11``): server fixtures.

``infrastructure`` chooses containers or local servers once per session (``servers``);
``make_database`` and ``vhost`` give each test run its own, dropped at the end.
"""

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import urlsplit

import pytest

from servicekit.testing.faults import TcpProxy
from servicekit.testing.servers import (
    Infrastructure,
    Vhost,
    VhostAdmin,
    database_factory,
    fresh_vhost,
    new_run_id,
    start_servers,
)
from servicekit.testing.tokens import TokenFactory


@pytest.fixture(scope="session")
def infrastructure(request: pytest.FixtureRequest) -> Iterator[Infrastructure]:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def announce(line: str) -> None:
        if reporter is not None:  # shown even with -q, so CI's log says which servers ran
            reporter.write_line(line)

    with start_servers(announce) as infra:
        yield infra


@pytest.fixture(scope="session")
def run_id() -> str:
    return new_run_id()


@pytest.fixture(scope="session")
def make_database(infrastructure: Infrastructure, run_id: str) -> Iterator[Callable[[str], str]]:
    """Factory: a new empty database named after this run; all are dropped at the end."""
    with database_factory(infrastructure, run_id) as create:
        yield create


@pytest.fixture(scope="session")
def vhost_admin(infrastructure: Infrastructure) -> VhostAdmin:
    return VhostAdmin(infrastructure)


@pytest.fixture
def vhost(vhost_admin: VhostAdmin, run_id: str) -> Iterator[Vhost]:
    """A fresh RabbitMQ vhost for one test, deleted afterwards."""
    with fresh_vhost(vhost_admin, run_id) as fresh:
        yield fresh


@pytest.fixture
def amqp_url(vhost: Vhost) -> str:
    return vhost.url


@pytest.fixture
def management_url(vhost_admin: VhostAdmin) -> str:
    """The broker's management API, credentials included: ``declare_queues`` sets policies there."""
    return vhost_admin.management_url


@pytest.fixture
def token_factory() -> TokenFactory:
    return TokenFactory()


@pytest.fixture
async def amqp_proxy(infrastructure: Infrastructure) -> AsyncIterator[TcpProxy]:
    """A cuttable proxy in front of the broker."""
    parts = urlsplit(infrastructure.amqp_url)
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672).start()
    yield proxy
    await proxy.stop()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that run a ``main()``: it points the root logger at the test's captured output."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
