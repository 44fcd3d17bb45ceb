"""compose.yaml: checked structurally everywhere, validated by docker-compose where present."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"auth": True, "recipes": True, "notifier": True, "media": False, "backup": False}
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
    for name, has_api in SERVICES.items():
        expected |= {f"{name}-migrate", f"{name}-worker"} | ({f"{name}-api"} if has_api else set())

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
    for name in SERVICES:
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
        assert "env_file" not in svc
        env = svc["environment"]
        assert isinstance(env, dict)
        assert all(key.startswith(f"{service.upper()}_") for key in env), name
        assert env[f"{service.upper()}_DATABASE_URL"].endswith(f"@postgres:5432/{service}")
        assert "@rabbitmq:5672/" in env[f"{service.upper()}_AMQP_URL"]
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
    assert {f"{n}-api" for n, api in SERVICES.items() if api} == set(gateway_deps)
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
    for name in ("auth-api", "recipes-api", "notifier-api"):
        service = name.split("-")[0].upper()
        assert services[name]["environment"][f"{service}_ENVIRONMENT"].endswith(":-production}")
    published = "${GATEWAY_ADDRESS:-0.0.0.0}:${GATEWAY_PORT:-8080}:8080"
    assert services["gateway"]["ports"] == [published]


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
