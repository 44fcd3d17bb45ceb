"""Each service image alone: ``migrate`` against a container PostgreSQL, then its process.

The way a platform team deploys one service: its image, the environment, a database and a
broker. The container runs with a read-only root filesystem (a volume for its data, tmpfs for
/tmp) as the image's numeric user; ``/healthz`` and ``/readyz`` answer, and the image's own
HEALTHCHECK reports it healthy.
"""

from collections.abc import Iterator

import docker
import httpx
import pytest
from docker.models.containers import Container
from docker.models.networks import Network
from platform_layout import LAYOUT

from containers.docker_checks import SERVICES, published_port, service_image
from servicekit.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def main_process_port(service: str) -> int:
    """Where the image's default process (its first: the API, else the worker) answers health
    inside its container: the service's own default, which deploy/platform.toml states."""
    layout = LAYOUT.service(service)
    return layout.port_of(layout.processes[0])


def environment(service: str, infrastructure: dict[str, str]) -> dict[str, str]:
    prefix = service.upper()
    return {
        f"{prefix}_DATABASE_URL": f"{infrastructure['database']}/{service}",
        f"{prefix}_AMQP_URL": infrastructure["amqp"],
    }


@pytest.fixture
def data_volume(engine: docker.DockerClient, run_label: str, service: str) -> Iterator[str]:
    name = f"rp-checks-{run_label}-{service}-data"
    yield name
    engine.volumes.get(name).remove(force=True)


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_migrates_then_serves_health_and_readiness(
    engine: docker.DockerClient,
    network: Network,
    infrastructure: dict[str, str],
    data_volume: str,
    service: str,
) -> None:
    image = engine.images.get(service_image(service))
    assert image.attrs["Config"]["User"] == "10001:10001"
    env = environment(service, infrastructure)
    run = {
        "environment": env,
        "network": network.name,
        "read_only": True,
        "tmpfs": {"/tmp": ""},
        "volumes": {data_volume: {"bind": f"/app/var/{service}", "mode": "rw"}},
    }

    migrate: Container = engine.containers.run(image.id, [service, "migrate"], detach=True, **run)
    try:
        status = migrate.wait(timeout=180)
        assert status["StatusCode"] == 0, migrate.logs().decode()
    finally:
        migrate.remove(force=True)

    # No command: the image's default process (the API, or the worker of a service without one).
    health_port = main_process_port(service)
    process: Container = engine.containers.run(
        image.id, detach=True, ports={f"{health_port}/tcp": ("127.0.0.1", None)}, **run
    )
    try:
        port = published_port(process, health_port)

        def answers(path: str) -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(lambda: answers("/healthz"), within=120, what=f"{service} /healthz")
        wait_until(lambda: answers("/readyz"), within=120, what=f"{service} /readyz")

        def healthy() -> bool:
            process.reload()
            state = process.attrs["State"]
            assert state["Running"], process.logs().decode()
            return bool(state.get("Health", {}).get("Status") == "healthy")

        wait_until(healthy, within=120, what=f"{service}'s HEALTHCHECK")
    except AssertionError:
        print(process.logs().decode())
        raise
    finally:
        process.remove(force=True)
