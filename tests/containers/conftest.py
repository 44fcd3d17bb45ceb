"""Container checks (``make test-containers``): the service images and the compose stack, run.

They need a Docker engine (DOCKER_HOST; ``scripts/ensure-docker`` provides one) and the images
``scripts/build-images`` builds; the infrastructure images come from POSTGRES_IMAGE,
RABBITMQ_IMAGE, MAILPIT_IMAGE and GATEWAY_IMAGE (the official images unless set). Not part of
``make test`` (tests/pytest.ini's testpaths leave this folder out): they build and start images.
"""

import uuid
from collections.abc import Iterator

import docker
import pytest
from docker.models.networks import Network

from containers.docker_checks import POSTGRES_IMAGE, RABBITMQ_IMAGE
from servicekit.testing import wait_until


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    client = docker.from_env(timeout=120)
    client.ping()  # no engine: fail here, loudly (make test-containers says what it needs)
    return client


@pytest.fixture(scope="session")
def run_label() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def network(engine: docker.DockerClient, run_label: str) -> Iterator[Network]:
    created = engine.networks.create(f"rp-checks-{run_label}")
    yield created
    created.remove()


@pytest.fixture(scope="session")
def infrastructure(
    engine: docker.DockerClient, network: Network, run_label: str
) -> Iterator[dict[str, str]]:
    """PostgreSQL and RabbitMQ on the checks' network (found there by container name): URLs."""
    password = uuid.uuid4().hex
    postgres = engine.containers.run(
        POSTGRES_IMAGE,
        name=f"rp-checks-{run_label}-postgres",
        environment={"POSTGRES_PASSWORD": password},
        network=network.name,
        detach=True,
    )
    rabbitmq = engine.containers.run(
        RABBITMQ_IMAGE,
        name=f"rp-checks-{run_label}-rabbitmq",
        environment={"RABBITMQ_DEFAULT_USER": "checks", "RABBITMQ_DEFAULT_PASS": password},
        network=network.name,
        detach=True,
    )
    try:
        wait_until(
            lambda: postgres.exec_run(["pg_isready", "-h", "127.0.0.1"]).exit_code == 0,
            within=60,
            what="PostgreSQL",
        )
        wait_until(
            lambda: (
                rabbitmq.exec_run(
                    ["rabbitmq-diagnostics", "-q", "check_port_connectivity"]
                ).exit_code
                == 0
            ),
            within=90,
            what="RabbitMQ",
        )
        yield {
            "database": f"postgresql+psycopg://postgres:{password}@{postgres.name}:5432",
            "amqp": f"amqp://checks:{password}@{rabbitmq.name}:5672/",
        }
    finally:
        postgres.remove(force=True, v=True)
        rabbitmq.remove(force=True, v=True)
