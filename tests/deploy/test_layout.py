"""deploy/platform.toml against the code: the services that exist, each service's own defaults
(prefix, queue, ports, commands), which the layout states rather than sets (the file's header
says why), and the queues the workers really consume, with the bindings the catalogue
(contracts.catalogue.EVENT_FLOWS) documents. compose and the Kubernetes files are checked against
the layout in test_compose.py and test_k8s.py.
"""

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest
from platform_layout import LAYOUT, LAYOUT_FILE, ServiceLayout, load

from contracts.catalogue import EVENT_FLOWS
from servicekit.defaults import DEFAULT_JWKS_URL

ROOT = Path(__file__).resolve().parents[2]


def _settings(service: ServiceLayout) -> ModuleType:
    return importlib.import_module(f"{service.name}.settings")


def _default(service: ServiceLayout, field: str) -> object:
    return _settings(service).Settings.model_fields[field].default


def test_the_layout_lists_every_service_package() -> None:
    packages = {p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml")}

    assert set(LAYOUT.names) == packages
    assert len(LAYOUT.names) == len(set(LAYOUT.names))


def test_the_ports_are_distinct() -> None:
    assert len(LAYOUT.ports) == len(set(LAYOUT.ports))


def test_a_misspelt_key_is_refused(tmp_path: Path) -> None:
    """An optional key spelt wrong would otherwise read as its absence (no API, no queue)."""
    misspelt = tmp_path / "platform.toml"
    misspelt.write_text(LAYOUT_FILE.read_text().replace("api_port =", "api_prot =", 1))

    with pytest.raises(ValueError, match="api_prot"):
        load(misspelt)


@pytest.mark.parametrize("service", LAYOUT.services, ids=lambda s: s.name)
def test_a_service_defaults_to_what_the_layout_says(service: ServiceLayout) -> None:
    settings = _settings(service)
    fields = settings.Settings.model_fields

    assert service.name == settings.SERVICE_NAME
    assert settings.Settings.model_config["env_prefix"] == service.env_prefix
    assert fields["health_port"].default == service.health_port
    assert ("api_port" in fields) == service.has_api == ("api" in service.processes)
    if service.has_api:
        assert fields["api_port"].default == service.api_port
    assert ("jwks_url" in fields) == service.verifies_tokens


@pytest.mark.parametrize("service", LAYOUT.services, ids=lambda s: s.name)
def test_a_service_command_has_the_layout_processes_and_commands(
    service: ServiceLayout,
) -> None:
    command = Path(sys.executable).parent / service.name
    usage = subprocess.run(
        [str(command), "--help"], capture_output=True, text=True, check=True
    ).stdout
    choices = re.search(r"\{([a-z,-]+)\}", usage)

    assert choices is not None, usage
    assert set(choices.group(1).split(",")) == {*service.processes, *service.commands}
    assert "worker" in service.processes and "migrate" in service.commands


def _port(url: object) -> int | None:
    return urlsplit(str(url)).port


def test_defaults_that_name_another_service_use_its_layout_port() -> None:
    """A service run alone on a developer machine finds the others where the runner puts them."""
    auth = LAYOUT.service("auth")
    recipes = LAYOUT.service("recipes")
    media = LAYOUT.service("media")
    notifier = LAYOUT.service("notifier")

    assert _port(DEFAULT_JWKS_URL) == auth.api_port
    assert _port(_default(recipes, "internal_base_url")) == recipes.api_port
    assert _port(_default(media, "recipes_internal_url")) == recipes.api_port
    assert _port(_default(media, "public_base_url")) == LAYOUT.gateway_port
    assert _port(_default(notifier, "public_base_url")) == LAYOUT.gateway_port


def test_each_worker_consumes_its_layout_queue_with_the_catalogue_bindings() -> None:
    """The consumers as their workers build them (scripts/asyncapi.py builds each in a process
    of its own): queue names from the layout, bindings exactly EVENT_FLOWS's consumers."""
    building = {
        service.name: subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "asyncapi.py"), "--consumer-of", service.name],
            stdout=subprocess.PIPE,
            text=True,
        )
        for service in LAYOUT.consumers
    }
    bound: dict[str, set[str]] = {}
    for name, process in building.items():
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0, name
        consumer = json.loads(out)
        assert consumer["queue"] == LAYOUT.service(name).queue
        for routing_key in consumer["routing_keys"]:
            bound.setdefault(routing_key, set()).add(name)

    documented = {event: set(to) for event, (_, to) in EVENT_FLOWS.items() if to}
    assert bound == documented
