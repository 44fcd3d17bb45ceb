"""compose.yaml: checked structurally everywhere, validated by docker-compose where present;
its services, prefixes and ports checked against deploy/platform.toml."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from platform_layout import LAYOUT

ROOT = Path(__file__).resolve().parents[2]
INFRA = {"rabbitmq", "postgres", "mailpit", "gateway"}
CLUSTER = {"rabbitmq-1", "rabbitmq-2", "rabbitmq-3"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _platform_containers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if name not in INFRA | CLUSTER}


def test_every_service_runs_its_api_and_worker_apart(compose: dict[str, Any]) -> None:
    expected = INFRA | CLUSTER
    for service in LAYOUT.services:
        expected |= {f"{service.name}-migrate"}
        expected |= {f"{service.name}-{process}" for process in service.processes}

    assert set(compose["services"]) == expected


def test_infrastructure(compose: dict[str, Any]) -> None:
    services = compose["services"]

    # Official images by default; scripts/ensure-docker names local stand-ins through these.
    assert services["rabbitmq"]["image"] == "${RABBITMQ_IMAGE:-rabbitmq:4.1-management}"
    assert services["postgres"]["image"] == "${POSTGRES_IMAGE:-postgres:16}"
    assert services["mailpit"]["image"] == "${MAILPIT_IMAGE:-axllent/mailpit:v1.21}"
    assert services["gateway"]["image"] == "${GATEWAY_IMAGE:-nginx:1.27-alpine}"
    init = ROOT / "deploy" / "compose" / "postgres-init.sql"
    assert any(
        str(v).endswith("/docker-entrypoint-initdb.d/10-databases.sql:ro")
        for v in services["postgres"]["volumes"]
    )
    for name in LAYOUT.names:
        assert f"CREATE DATABASE {name};" in init.read_text()
    for name in ("rabbitmq", "postgres", "mailpit", "gateway"):
        assert services[name]["healthcheck"]["test"]


def test_each_container_is_built_from_the_one_dockerfile(compose: dict[str, Any]) -> None:
    for name, svc in _platform_containers(compose).items():
        service = name.rsplit("-", 1)[0]
        assert svc["build"]["context"] == "."
        assert "dockerfile" not in svc["build"]  # the root Dockerfile
        assert svc["build"]["args"]["SERVICE"] == service
        assert svc["image"] == f"recipe-platform/{service}:${{TAG:-dev}}"
        assert svc["command"][0] == service
        assert svc["read_only"] is True


def test_configured_only_through_environment_variables(compose: dict[str, Any]) -> None:
    for name, svc in _platform_containers(compose).items():
        service = name.rsplit("-", 1)[0]
        prefix = LAYOUT.service(service).env_prefix
        assert "env_file" not in svc
        env = svc["environment"]
        assert isinstance(env, dict)
        assert all(key.startswith(prefix) for key in env), name
        assert env[f"{prefix}DATABASE_URL"].endswith(f"@postgres:5432/{service}")
        assert "@rabbitmq:5672/" in env[f"{prefix}AMQP_URL"]
        # Data lives in named volumes, never in the source tree.
        assert all(not str(v).startswith((".", "/")) for v in svc.get("volumes", [])), name


def test_processes_start_after_infrastructure_and_migrations_by_health(
    compose: dict[str, Any],
) -> None:
    for name, svc in _platform_containers(compose).items():
        service = name.rsplit("-", 1)[0]
        depends = svc["depends_on"]
        assert depends["rabbitmq"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"
        if name.endswith("-migrate"):
            assert svc["command"] == [service, "migrate"]
            assert svc["restart"] == "no"
        else:
            assert depends[f"{service}-migrate"]["condition"] == "service_completed_successfully"
            # The image's own check: /readyz of the process the container runs.
            check = ["/usr/local/lib/platform/process.py", "check"]
            assert svc["healthcheck"]["test"][-2:] == check
    gateway_deps = compose["services"]["gateway"]["depends_on"]
    assert {f"{s.name}-api" for s in LAYOUT.apis} == set(gateway_deps)
    assert all(d["condition"] == "service_healthy" for d in gateway_deps.values())


def test_only_the_gateway_publishes_a_public_port(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert name == "gateway" or str(port).startswith("127.0.0.1:"), (name, port)
    assert not any("ports" in svc for svc in _platform_containers(compose).values())


def test_media_and_backups_are_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]

    assert "media-data:/app/var/media" in services["media-worker"]["volumes"]
    assert "media-data:/srv/media:ro" in services["gateway"]["volumes"]
    assert "backup-data:/app/var/backup" in services["backup-worker"]["volumes"]
    assert {"media-data", "backup-data"} <= set(compose["volumes"])


def test_the_file_follows_the_compose_specification() -> None:
    """Offline, against the Compose Specification's schema vendored in check-jsonschema."""
    schema = ["--builtin-schema", "vendor.compose-spec"]
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *schema, str(ROOT / "compose.yaml")],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def _compose_config(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker-compose", *arguments, "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
    )


PRODUCTION_SECRETS = {
    "POSTGRES_PASSWORD": "p",
    "RABBITMQ_PASSWORD": "r",
    "AUTH_SIGNING_KEY_PEM": "k",
    "RECIPES_IMAGE_URL_SECRET": "i",
    "NOTIFIER_UNSUBSCRIBE_SECRET": "u",
    "PUBLIC_BASE_URL": "https://recipes.example",
}


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
@pytest.mark.parametrize("missing", sorted(PRODUCTION_SECRETS))
def test_production_refuses_to_start_without_each_secret(missing: str) -> None:
    env = {k: v for k, v in PRODUCTION_SECRETS.items() if k != missing}

    refused = _compose_config(env=env)
    assert refused.returncode != 0
    assert missing in refused.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_production_starts_with_every_secret_set() -> None:
    assert _compose_config(env=PRODUCTION_SECRETS).returncode == 0


def test_production_is_the_default_mode(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for service in LAYOUT.apis:
        env = services[f"{service.name}-api"]["environment"]
        assert env[f"{service.env_prefix}ENVIRONMENT"].endswith(":-production}")
    port = LAYOUT.gateway_port
    published = f"${{GATEWAY_ADDRESS:-0.0.0.0}}:${{GATEWAY_PORT:-{port}}}:{port}"
    assert services["gateway"]["ports"] == [published]


def _port(url: str) -> int | None:
    return urlsplit(url).port


def test_the_gateway_and_the_services_reach_each_other_on_the_layout_ports(
    compose: dict[str, Any],
) -> None:
    """Services listen on their defaults (the layout's ports); compose names them, not sets."""
    services = compose["services"]
    gateway = services["gateway"]["environment"]
    assert gateway["GATEWAY_LISTEN"] == f"0.0.0.0:{LAYOUT.gateway_port}"
    assert (
        f"127.0.0.1:{LAYOUT.gateway_port}/healthz" in services["gateway"]["healthcheck"]["test"][-1]
    )
    for service in LAYOUT.apis:
        upstream = f"{service.name}-api:{service.api_port}"
        assert gateway[f"{service.name.upper()}_UPSTREAM"] == upstream
    auth_api = f"auth-api:{LAYOUT.service('auth').api_port}"
    recipes_api = f"http://recipes-api:{LAYOUT.service('recipes').api_port}"
    for service in LAYOUT.services:
        env = services[f"{service.name}-worker"]["environment"]
        jwks = env.get(f"{service.env_prefix}JWKS_URL")
        expected = f"http://{auth_api}/api/auth/.well-known/jwks.json"
        assert jwks == (expected if service.verifies_tokens else None), service.name
        # No port is set: each process listens on its service's default.
        assert not {f"{service.env_prefix}API_PORT", f"{service.env_prefix}HEALTH_PORT"} & set(env)
    assert services["recipes-api"]["environment"]["RECIPES_INTERNAL_BASE_URL"] == recipes_api
    assert services["media-worker"]["environment"]["MEDIA_RECIPES_INTERNAL_URL"] == recipes_api


def test_the_container_checks_publish_the_workers_health_ports() -> None:
    """tests/containers/compose.checks.yaml: the metrics the stack test reads."""
    checks = yaml.safe_load((ROOT / "tests" / "containers" / "compose.checks.yaml").read_text())
    for name, svc in checks["services"].items():
        if name in INFRA:
            continue
        service = LAYOUT.service(name.removesuffix("-worker"))
        assert svc["ports"] == [f"127.0.0.1::{service.health_port}"], name


def test_the_development_override_publishes_no_service_port() -> None:
    """compose.dev.yaml opens the infrastructure to `make up`, whose ports are the layout's."""
    dev = yaml.safe_load((ROOT / "compose.dev.yaml").read_text())
    assert set(dev["services"]) <= INFRA
    env = (ROOT / "deploy" / "compose" / "development.env").read_text()
    (public,) = [line for line in env.splitlines() if line.startswith("PUBLIC_BASE_URL=")]
    assert _port(public.split("=", 1)[1]) == LAYOUT.gateway_port


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_development_defaults_come_only_from_the_explicit_override() -> None:
    """With the dev env file and compose.dev.yaml: development mode, every port on loopback."""
    dev = ["--env-file", "deploy/compose/development.env", "-f", "compose.yaml"]
    dev += ["-f", "compose.dev.yaml"]
    assert _compose_config(*dev, env={}).returncode == 0
    rendered = subprocess.run(
        ["docker-compose", *dev, "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": os.environ["PATH"]},
        check=True,
    )
    config = yaml.safe_load(rendered.stdout)
    assert config["services"]["auth-api"]["environment"]["AUTH_ENVIRONMENT"] == "development"
    for name, svc in config["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)  # docker-compose 1.29's form
