"""Every service is a ``ServiceSpec`` (``servicekit.service``), and the docs follow the specs.

Each spec is read in a process of its own: the services' table models share SQLModel's one
metadata, so two services cannot be imported into one process.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contracts.catalogue import EVENT_FLOWS

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(path.name for path in (ROOT / "services").iterdir() if path.is_dir())
#: Lines a service's main.py may take: a declaration, its imports and the `main` line.
MAIN_LINES_AT_MOST = 60

DESCRIBE = """
import json, sys
from servicekit.service import ServiceSpec
spec = __import__(f"{sys.argv[1]}.main", fromlist=["service"]).service
assert isinstance(spec, ServiceSpec)
print(json.dumps({
    "name": spec.name,
    "queue": spec.queue,
    "routing_keys": spec.routing_keys,
    "api": spec.create_app is not None,
    "commands": spec.command_names,
}))
"""


def describe(service: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", DESCRIBE, service], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


@pytest.fixture(scope="module")
def specs() -> dict[str, dict[str, Any]]:
    return {service: describe(service) for service in SERVICES}


def test_five_services_each_declared_by_a_spec_named_as_its_package(
    specs: dict[str, dict[str, Any]],
) -> None:
    assert SERVICES == ["auth", "backup", "media", "notifier", "recipes"]
    for service, spec in specs.items():
        assert spec["name"] == service
        assert spec["queue"] == f"{service}.events"
        assert {"worker", "migrate"} <= set(spec["commands"])
        assert ("api" in spec["commands"]) == spec["api"]


def test_what_each_service_consumes_is_what_the_event_catalogue_says(
    specs: dict[str, dict[str, Any]],
) -> None:
    for service, spec in specs.items():
        catalogued = sorted(
            key for key, (_, consumers) in EVENT_FLOWS.items() if service in consumers
        )
        assert spec["routing_keys"] == catalogued, service


def test_every_main_is_a_short_declaration() -> None:
    for service in SERVICES:
        main = ROOT / "services" / service / "src" / service / "main.py"
        lines = main.read_text().splitlines()
        assert len(lines) <= MAIN_LINES_AT_MOST, f"{main.name} of {service}: {len(lines)} lines"
        assert any(line.startswith("service = ServiceSpec(") for line in lines), service
