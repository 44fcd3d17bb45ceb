"""The recipe story (recipe_story.py) on a platform started as ``make up`` starts it."""

import email
import subprocess
from email.message import Message

import httpx
import pytest
from conftest import RunningPlatform
from recipe_story import tell_the_recipe_story

pytestmark = pytest.mark.integration


class MadeUpPlatform:
    """``running_platform`` seen as a StoryPlatform: ports on loopback, files in its var dir."""

    def __init__(self, platform: RunningPlatform) -> None:
        self._platform = platform
        self.gateway_url = platform.gateway_url

    def metrics(self, service: str) -> str:
        port = self._platform.health_port(service)
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return ""

    def run(self, service: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        return self._platform.run(service, *arguments)

    def mails(self) -> list[Message]:
        mail_dir = self._platform.mail_dir
        if not mail_dir.is_dir():
            return []
        return [email.message_from_bytes(path.read_bytes()) for path in mail_dir.rglob("*.eml")]

    def backup_exports(self) -> list[str]:
        paths = sorted(self._platform.backup_dir.glob("users_*.csv"))
        return [path.read_text(encoding="utf-8") for path in paths]


def test_a_recipe_from_upload_to_digest_and_backup(running_platform: RunningPlatform) -> None:
    tell_the_recipe_story(MadeUpPlatform(running_platform))
