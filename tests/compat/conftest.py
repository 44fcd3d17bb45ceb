"""The platform is the session's ``running_platform`` (tests/conftest.py), shared with the
end-to-end test: one platform per test run."""

from collections.abc import Iterator

import httpx
import pytest
from conftest import RunningPlatform


@pytest.fixture
def gateway(running_platform: RunningPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running_platform.gateway_url, timeout=30) as client:
        yield client
