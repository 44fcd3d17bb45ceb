"""compose.yaml: checked structurally everywhere, validated by docker-compose where present."""

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


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _platform_containers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if name not in INFRA}


def test_every_service_runs_its_api_and_worker_apart(compose: dict[str, Any]) -> None:
    expected = set(INFRA)
    for name, has_api in SERVICES.items():
        expected |= {f"{name}-migrate", f"{name}-worker"} | ({f"{name}-api"} if has_api else set())

    assert set(compose["services"]) == expected


def test_infrastructure(compose: dict[str, Any]) -> None:
    services = compose["services"]

    assert services["rabbitmq"]["image"].startswith("rabbitmq:4.")
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "mailpit" in services["mailpit"]["image"]
    init = ROOT / "deploy" / "compose" / "postgres-init.sql"
    assert any(
        str(v).endswith("/docker-entrypoint-initdb.d/10-databases.sql:ro")
        for v in services["postgres"]["volumes"]
    )
    for name in SERVICES:
        assert f"CREATE DATABASE {name};" in init.read_text()
    for name in ("rabbitmq", "postgres", "mailpit", "gateway"):
        assert services[name]["healthcheck"]["test"]


def test_each_container_is_built_from_its_own_dockerfile(compose: dict[str, Any]) -> None:
    for name, svc in _platform_containers(compose).items():
        service = name.rsplit("-", 1)[0]
        assert svc["build"]["context"] == "."
        assert svc["build"]["dockerfile"] == f"services/{service}/Dockerfile"
        assert svc["command"][0] == service
        assert (ROOT / "services" / service / "Dockerfile").is_file(), name


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
            assert "/readyz" in " ".join(svc["healthcheck"]["test"])
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


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_validates_the_file() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )

    assert result.returncode == 0, result.stderr
