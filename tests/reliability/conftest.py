"""Fixtures of the reliability suite: the platform seen from outside, accounts, the report."""

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import RunningPlatform
from rabbitmq_cluster import NODES, RABBITMQ_BIN, Cluster

from reliability.probes import Account, Platform, register
from reliability.report import Report
from servicekit.testing import Infrastructure, VhostAdmin


@pytest.fixture(scope="session")
def reliability_report() -> Iterator[Report]:
    """Collects every scenario's figures; written to reliability/report.md at the end."""
    report = Report()
    yield report
    if any(row.outcome != "not run" for row in report.rows.values()):
        report.write()


@pytest.fixture(scope="session")
def platform(
    running_platform: RunningPlatform, vhost_admin: VhostAdmin, infrastructure: Infrastructure
) -> Platform:
    amqp = urlsplit(infrastructure.amqp_url)
    return Platform(
        running=running_platform,
        admin=vhost_admin,
        management_api=infrastructure.management_url.rstrip("/") + "/api",
        credentials=(amqp.username or "guest", amqp.password or "guest"),
    )


@pytest.fixture
def gateway(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def accounts(platform: Platform) -> dict[str, Account]:
    """Two sellers and two customers, signed in once for the whole session."""
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
        return {
            "seller": register(client, "seller"),
            "other_seller": register(client, "seller"),
            "customer": register(client, "customer"),
            "other_customer": register(client, "customer"),
        }


def cluster_ports_free(base: int) -> bool:
    """Whether a cluster at ``base`` can listen: the proxy's two ports and three per node."""
    ports = [base, base + 1] + [base + 10 * n + k for n in NODES for k in range(3)]
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@pytest.fixture(scope="session")
def rabbitmq_cluster(run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A three-node RabbitMQ cluster of this test run behind haproxy (never the machine's node).

    Its own ports (below the ephemeral range), node names and data: it runs beside other test
    runs and their clusters. Destroyed at the end of the session.
    """
    if not (RABBITMQ_BIN / "rabbitmq-server").exists():
        pytest.skip("needs RabbitMQ installed on this machine (scripts/ensure-infra installs it)")
    base = next(b for b in range(24000, 32000, 100) if cluster_ports_free(b))
    cluster = Cluster(
        base_dir=tmp_path_factory.mktemp("rabbitmq-cluster"), base_port=base, name=f"rc{run_id}"
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def cluster_infrastructure(
    infrastructure: Infrastructure, rabbitmq_cluster: Cluster
) -> Infrastructure:
    """The test run's PostgreSQL with the cluster as its broker."""
    return Infrastructure(
        admin_database_url=infrastructure.admin_database_url,
        amqp_url=rabbitmq_cluster.amqp_url,
        management_url=rabbitmq_cluster.management_url,
    )


@pytest.fixture(scope="session")
def cluster_admin(cluster_infrastructure: Infrastructure) -> VhostAdmin:
    return VhostAdmin(cluster_infrastructure)
