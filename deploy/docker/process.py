"""Entry point and health check of the service images (the root Dockerfile).

``process.py run [COMMAND...]``: runs COMMAND, or without one the service's main process:
``<service> api`` when its settings have an API port, ``<service> worker`` otherwise.
``process.py check``: the image's HEALTHCHECK; asks ``/readyz`` of the process this container
runs (PID 1's command line says ``api`` or ``worker``), on the port its settings name, so a
port changed through the environment is followed too.
"""

import importlib
import os
import sys
import urllib.request
from typing import Any

SERVICE = os.environ["SERVICE"]


def settings() -> Any:
    return importlib.import_module(f"{SERVICE}.settings").Settings()


def has_api() -> bool:
    module = importlib.import_module(f"{SERVICE}.settings")
    return "api_port" in module.Settings.model_fields


def run(command: list[str]) -> None:
    if not command:
        command = [SERVICE, "api" if has_api() else "worker"]
    os.execvp(command[0], command)


def check() -> None:
    with open("/proc/1/cmdline", "rb") as file:
        arguments = file.read().split(b"\0")
    current = settings()
    port = current.api_port if b"api" in arguments else current.health_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["check"]:
        check()
    else:
        run(sys.argv[2:])
