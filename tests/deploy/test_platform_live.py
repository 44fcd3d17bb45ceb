"""The real platform, started as `make up` starts it, answers through the gateway only."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import processes
import pytest
from conftest import RUNNER, RunningPlatform

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway(running_platform: RunningPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running_platform.gateway_url, timeout=10) as client:
        yield client


def test_every_process_runs_and_is_ready(running_platform: RunningPlatform) -> None:
    status = subprocess.run(
        [sys.executable, str(RUNNER), "status"],
        env=running_platform.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()

    assert len(status) == 9
    assert all(" ready " in line for line in status), status
    assert len(processes.sweep(running_platform.var_dir)) >= 8


@pytest.mark.parametrize("service", ["auth", "recipes", "notifications"])
def test_each_services_openapi_and_docs_are_served_through_the_gateway(
    gateway: httpx.Client, service: str
) -> None:
    spec = gateway.get(f"/api/{service}/openapi.json")
    docs = gateway.get(f"/api/{service}/docs")

    assert spec.status_code == 200
    assert spec.json()["paths"]
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]


def test_the_recipe_list_answers_with_and_without_slash_and_keeps_the_request_id(
    gateway: httpx.Client,
) -> None:
    with_slash = gateway.get("/api/recipes/", headers={"X-Request-ID": "live-check-1"})
    without = gateway.get("/api/recipes")

    assert with_slash.status_code == 200 and without.status_code == 200
    assert with_slash.json()["count"] == without.json()["count"]
    assert with_slash.headers.get_list("x-request-id") == ["live-check-1"]


def test_internal_endpoints_are_not_reachable(gateway: httpx.Client) -> None:
    for path in ("/internal/images/1/1", "/healthz/../internal/images/1/1", "/metrics"):
        assert gateway.get(path).status_code == 404


def test_data_goes_under_the_platforms_own_var_dir(running_platform: RunningPlatform) -> None:
    var: Path = running_platform.var_dir

    assert (var / "log" / "recipes-api.log").is_file()
    assert (var / "run" / "gateway" / "nginx.conf").is_file()
    assert (var / "media").is_dir()
