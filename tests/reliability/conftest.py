"""Fixtures of the reliability suite: the platform seen from outside, accounts, the report."""

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import RunningPlatform

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
