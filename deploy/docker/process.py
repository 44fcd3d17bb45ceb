"""Entry point and health check of the service images (the root Dockerfile).

``process.py run [COMMAND...]``: runs COMMAND, or without one the service's main process:
``<service> api`` when its settings have an API port, ``<service> worker`` otherwise. Before
it does, it writes where that process answers ``/readyz`` (the port its settings name, so a
port changed through the environment is followed) to ``/tmp``.
``process.py check``: the image's HEALTHCHECK; asks that URL. Standard library only: measured
under load, importing the settings (pydantic) took longer than a health check may.
"""

import importlib
import os
import sys
import urllib.request
from pathlib import Path

SERVICE = os.environ["SERVICE"]
READYZ_FILE = Path("/tmp/platform-readyz-url")


def run(command: list[str]) -> None:
    settings_class = importlib.import_module(f"{SERVICE}.settings").Settings
    has_api = "api_port" in settings_class.model_fields
    if not command:
        command = [SERVICE, "api" if has_api else "worker"]
    if command[0] == SERVICE and command[1:2] in (["api"], ["worker"]):
        settings = settings_class()
        port = settings.api_port if command[1] == "api" else settings.health_port
        READYZ_FILE.write_text(f"http://127.0.0.1:{port}/readyz")
    os.execvp(command[0], command)


def check() -> None:
    url = READYZ_FILE.read_text()
    with urllib.request.urlopen(url, timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["check"]:
        check()
    else:
        run(sys.argv[2:])
