"""compose.yaml for real, in production mode: the recipe story through the compose gateway.

The built service images and the infrastructure images start in health order; the story
(tests/recipe_story.py) then runs through the gateway alone: register, a recipe with a photo
until its image is ready, a rating, the digest in the mail catcher, the weekly backup written.
Secrets are generated for the run, so this is also the proof that production mode starts with
them (and tests/deploy/test_compose.py that it refuses to without).
"""

import email
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from email.message import Message
from functools import partial
from pathlib import Path

import docker
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from platform_layout import LAYOUT
from recipe_story import tell_the_recipe_story

from containers.docker_checks import free_port, published_port
from servicekit.testing import wait_until

# docker-compose up waits for every health condition: minutes on a busy two-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
FILES = [
    "-f",
    str(ROOT / "compose.yaml"),
    "-f",
    str(Path(__file__).with_name("compose.checks.yaml")),
]
PROCESSES = [f"{s.name}-{process}" for s in LAYOUT.services for process in s.processes]
EXPORTS = (
    "import json, pathlib; print(json.dumps([p.read_text() for p in"
    " sorted(pathlib.Path('var/backup/backups').glob('users_*.csv'))]))"
)


def production_environment(gateway_port: int) -> dict[str, str]:
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "RABBITMQ_PASSWORD": secrets.token_hex(16),
        "AUTH_SIGNING_KEY_PEM": key.decode(),
        "RECIPES_IMAGE_URL_SECRET": secrets.token_hex(32),
        "NOTIFIER_UNSUBSCRIBE_SECRET": secrets.token_hex(32),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{gateway_port}",
        "GATEWAY_ADDRESS": "127.0.0.1",
        "GATEWAY_PORT": str(gateway_port),
    }


class ComposeStack:
    """One compose project of the platform, seen as a StoryPlatform."""

    def __init__(self, engine: docker.DockerClient, project: str, env: dict[str, str]) -> None:
        self._engine = engine
        self._project = project
        self._env = env
        self.gateway_url = f"http://127.0.0.1:{env['GATEWAY_PORT']}"

    def compose(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker-compose", "-p", self._project, *FILES, *arguments],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=600,
            check=check,
        )

    def container(self, service: str) -> docker.models.containers.Container:
        container_id = self.compose("ps", "-q", service).stdout.strip()
        return self._engine.containers.get(container_id)

    def healthy(self, service: str) -> bool:
        found = self.container(service)
        return bool(found.attrs["State"].get("Health", {}).get("Status") == "healthy")

    def metrics(self, service: str) -> str:
        port = published_port(
            self.container(f"{service}-worker"), LAYOUT.service(service).health_port
        )
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return ""

    def run(self, service: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        return self.compose("exec", "-T", f"{service}-worker", service, *arguments, check=False)

    def mails(self) -> list[Message]:
        base = f"http://127.0.0.1:{published_port(self.container('mailpit'), 8025)}/api/v1"
        listed = httpx.get(f"{base}/messages", timeout=10).json()["messages"]
        return [
            email.message_from_bytes(httpx.get(f"{base}/message/{m['ID']}/raw", timeout=10).content)
            for m in listed
        ]

    def backup_exports(self) -> list[str]:
        found = self.compose("exec", "-T", "backup-worker", "python", "-c", EXPORTS).stdout
        exports: list[str] = json.loads(found)
        return exports


@pytest.fixture(scope="module")
def stack(engine: docker.DockerClient, run_label: str) -> Iterator[ComposeStack]:
    env = {**os.environ, **production_environment(free_port())}
    started = ComposeStack(engine, f"rp-checks-{run_label}", env)
    try:
        up = started.compose("up", "-d", "--no-build", check=False)
        assert up.returncode == 0, up.stderr
        wait_until(lambda: started.healthy("gateway"), within=300, what="the gateway healthy")
        yield started
    except BaseException:
        print(started.compose("logs", "--no-color", "--tail", "40", check=False).stdout)
        raise
    finally:
        started.compose("down", "-v", "--remove-orphans", check=False)


def test_every_process_runs_from_its_image_and_is_healthy(stack: ComposeStack) -> None:
    # The gateway waited for the APIs only; the workers may still be starting.
    for name in PROCESSES:
        wait_until(partial(stack.healthy, name), within=300, what=f"{name} healthy")
    for name in ("auth-migrate", "media-migrate"):
        assert stack.container(name).attrs["State"]["ExitCode"] == 0


def test_the_recipe_story_through_the_compose_gateway(stack: ComposeStack) -> None:
    tell_the_recipe_story(stack)
