"""Every service is a ``ServiceSpec`` (``servicekit.service``) declared in a short ``main.py``.

(What each spec consumes is compared with ``contracts.catalogue.EVENT_FLOWS`` and the layout in
tests/deploy/test_layout.py.) Each spec is read in a process of its own: the services' table
models share SQLModel's one metadata, so two services cannot be imported into one process.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from platform_layout import LAYOUT

ROOT = Path(__file__).resolve().parents[2]
SERVICES = LAYOUT.names
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


def test_every_service_is_declared_by_a_spec_named_as_its_package(
    specs: dict[str, dict[str, Any]],
) -> None:
    for service, spec in specs.items():
        assert spec["name"] == service
        assert spec["queue"] == f"{service}.events"
        assert {"worker", "migrate"} <= set(spec["commands"])
        assert ("api" in spec["commands"]) == spec["api"]


def test_every_main_is_a_short_declaration() -> None:
    for service in SERVICES:
        main = ROOT / "services" / service / "src" / service / "main.py"
        lines = main.read_text().splitlines()
        assert len(lines) <= MAIN_LINES_AT_MOST, f"{main.name} of {service}: {len(lines)} lines"
        assert any(line.startswith("service = ServiceSpec(") for line in lines), service
