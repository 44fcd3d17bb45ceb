"""The platform is the session's ``running_platform`` (tests/conftest.py), shared with the
end-to-end test: one platform per test run."""

from collections.abc import Iterator

import httpx
import pytest
from conftest import RunningPlatform
from gateway_client import gateway_client


@pytest.fixture
def gateway(running_platform: RunningPlatform) -> Iterator[httpx.Client]:
    with gateway_client(running_platform.gateway_url) as client:
        yield client
