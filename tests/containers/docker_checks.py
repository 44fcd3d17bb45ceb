"""What the container checks share: image names and waiting on containers."""

import os
import socket

from docker.models.containers import Container
from platform_layout import LAYOUT

SERVICES = LAYOUT.names
POSTGRES_IMAGE = os.environ.get("POSTGRES_IMAGE", "postgres:16")
RABBITMQ_IMAGE = os.environ.get("RABBITMQ_IMAGE", "rabbitmq:3.13-management")
TAG = os.environ.get("TAG", "dev")


def service_image(service: str) -> str:
    return f"recipe-platform/{service}:{TAG}"


def published_port(container: Container, port: int) -> int:
    container.reload()
    return int(container.ports[f"{port}/tcp"][0]["HostPort"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
