"""One user story through the gateway only, told to any running platform.

A seller and a customer register and sign in; the seller posts a recipe with a real JPEG; the
media worker resizes it and the gateway serves the result; the customer rates it; the daily
digest mails the customer about it; the weekly backup exports both users. The story waits on the
workers' ``/metrics`` only to know when an event has been consumed (there is no API for that),
never to check an effect. The platform is ``make up``'s (e2e/test_end_to_end.py) or the compose
stack's (containers/test_compose_stack.py): each says, through ``StoryPlatform``, where its
gateway, metrics, mail and backups are and how it runs a service's command.
"""

import csv
import io
import subprocess
import uuid
from datetime import UTC, datetime
from email.message import Message
from typing import Any, Protocol

import httpx
from gateway_client import gateway_client
from PIL import Image

from servicekit.testing import wait_until

PASSWORD = "Gooseberry-Crumble-42"


class StoryPlatform(Protocol):
    gateway_url: str

    def metrics(self, service: str) -> str:
        """A worker's /metrics text (``notifier`` or ``backup``), empty when unreachable."""
        ...

    def run(self, service: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        """A service's command by hand (``backup run-now``)."""
        ...

    def mails(self) -> list[Message]:
        """Every mail the platform has sent so far."""
        ...

    def backup_exports(self) -> list[str]:
        """The text of every users export the backup has written, oldest first."""
        ...


def photo_jpeg(width: int = 1600, height: int = 1200) -> bytes:
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def consumed(platform: StoryPlatform, service: str, event_type: str) -> float:
    """How many events of a type a worker has handled, from its /metrics."""
    labels = (f'queue="{service}.events"', f'event_type="{event_type}"', 'outcome="handled"')
    total = 0.0
    for line in platform.metrics(service).splitlines():
        if line.startswith("events_consumed_total{") and all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def register_and_sign_in(gateway: httpx.Client, role: str) -> tuple[dict[str, Any], str]:
    name = f"{role}_{uuid.uuid4().hex[:8]}"
    registered = gateway.post(
        "/api/auth/register/",
        json={"username": name, "password": PASSWORD, "email": f"{name}@example.com", "role": role},
    )
    assert registered.status_code == 201, registered.text
    token = gateway.post("/api/auth/token/", json={"username": name, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return registered.json(), token.json()["access"]


def mails_to(platform: StoryPlatform, address: str) -> list[Message]:
    return [m for m in platform.mails() if address in str(m.get("To", ""))]


def text_of(message: Message) -> str:
    parts = message.walk() if message.is_multipart() else [message]
    return "".join(
        part.get_payload(decode=True).decode("utf-8", "replace")  # type: ignore[union-attr]
        for part in parts
        if part.get_content_type() in ("text/plain", "text/html")
    )


def tell_the_recipe_story(platform: StoryPlatform) -> None:
    with gateway_client(platform.gateway_url) as gateway:
        _story(platform, gateway)


def _story(platform: StoryPlatform, gateway: httpx.Client) -> None:
    seller, seller_token = register_and_sign_in(gateway, "seller")
    customer, customer_token = register_and_sign_in(gateway, "customer")
    title = f"Gooseberry crumble {uuid.uuid4().hex[:6]}"

    created = gateway.post(
        "/api/recipes/",
        headers={"Authorization": f"Bearer {seller_token}"},
        data={"title": title, "description": "Tart and sweet", "ingredients": "gooseberries"},
        files={"image": ("crumble.jpg", photo_jpeg(), "image/jpeg")},
    )
    assert created.status_code == 201, created.text
    recipe_id = created.json()["id"]
    assert created.json()["image_status"] == "pending"

    def ready_recipe() -> dict[str, Any] | None:
        body: dict[str, Any] = gateway.get(f"/api/recipes/{recipe_id}/").json()
        assert body["image_status"] != "failed", body
        return body if body["image_status"] == "ready" else None

    recipe = wait_until(ready_recipe, what="the resized image")
    image = httpx.get(recipe["resized_image_url"], timeout=10)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).size == (800, 600)

    rated = gateway.post(
        f"/api/recipes/{recipe_id}/rate/",
        headers={"Authorization": f"Bearer {customer_token}"},
        json={"score": 4, "comment": "Lovely"},
    )
    assert rated.status_code == 200, rated.text
    # Signed in: past the gateway's public read cache, so the rating shows at once.
    detail = gateway.get(
        f"/api/recipes/{recipe_id}/", headers={"Authorization": f"Bearer {customer_token}"}
    ).json()
    assert (detail["avg_rating"], detail["rating_count"]) == (4.0, 1)

    wait_until(
        lambda: (
            consumed(platform, "notifier", "recipe.created") >= 1
            and consumed(platform, "notifier", "user.registered") >= 2
        ),
        what="the notifier to learn about the users and the recipe",
    )
    today = datetime.now(UTC).date().isoformat()
    digest = platform.run("notifier", "send-digest", "--date", today)
    assert digest.returncode == 0, digest.stderr

    def digests_with_the_recipe() -> list[Message]:
        inbox = mails_to(platform, customer["email"])
        return [mail for mail in inbox if title in text_of(mail)]

    mails = wait_until(digests_with_the_recipe, within=30, what="the customer's digest")
    assert len(mails) == 1

    wait_until(
        lambda: consumed(platform, "backup", "user.registered") >= 2,
        what="the backup copy of the users",
    )
    backup = platform.run("backup", "run-now")
    assert backup.returncode == 0, backup.stderr
    exports = platform.backup_exports()
    assert exports, "no export written"
    rows = {row["Username"]: row for row in csv.DictReader(io.StringIO(exports[-1]))}
    assert rows[seller["username"]]["Role"] == "seller"
    assert rows[customer["username"]]["Email"] == customer["email"]
