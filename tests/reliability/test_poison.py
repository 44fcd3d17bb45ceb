"""Poison messages published straight to every consumer queue of the running platform.

Malformed JSON, an event version no consumer knows and a payload that fails validation can never
succeed, so each must be parked at once in ``<queue>.dlq`` with the reason in
``x-dead-letter-reason``; the consumer then handles the next, valid events as usual (checked
through their effects: the copies of a user, a processed image, the workers' counters).
"""

import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from reliability.probes import (
    CONSUMER_QUEUES,
    POISON_HEADER,
    Account,
    Platform,
    register,
)
from reliability.report import Report
from reliability.scenarios import small_jpeg
from servicekit.testing import wait_until

pytestmark = pytest.mark.integration

#: An event type each queue is bound to, so a poison message looks like real traffic.
HANDLED_TYPE = {
    "recipes.events": "recipe.image_ready",
    "media.events": "recipe.created",
    "notifier.events": "user.registered",
    "backup.events": "user.registered",
}


def envelope(event_type: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "version": version,
        "occurred_at": datetime.now(UTC).isoformat(),
        "producer": "reliability-test",
        "payload": payload,
    }


def poison_bodies(queue: str) -> dict[str, str]:
    event_type = HANDLED_TYPE[queue]
    return {
        "malformed-json": '{"event_id": "' + str(uuid.uuid4()) + '", "type": ',
        "unknown-version": json.dumps(envelope(event_type, 99, {"anything": 1})),
        "invalid-payload": json.dumps(envelope(event_type, 1, {"user_id": "not a number"})),
    }


def publish_to_queue(platform: Platform, queue: str, body: str, kind: str) -> str:
    """Publish through the management API's default exchange, straight into ``queue``."""
    message_id = str(uuid.uuid4())
    path = f"/exchanges/{quote(platform.vhost, safe='')}/amq.default/publish"
    with httpx.Client(
        base_url=platform.management_api, auth=platform.credentials, timeout=10
    ) as client:
        response = client.post(
            path,
            json={
                "properties": {
                    "message_id": message_id,
                    "delivery_mode": 2,
                    "content_type": "application/json",
                    "headers": {POISON_HEADER: kind},
                },
                "routing_key": queue,
                "payload": body,
                "payload_encoding": "string",
            },
        )
    response.raise_for_status()
    assert response.json()["routed"] is True, f"{queue} does not exist"
    return message_id


def test_poison_is_parked_with_its_reason_and_the_consumer_goes_on(
    platform: Platform,
    gateway: httpx.Client,
    accounts: dict[str, Account],
    reliability_report: Report,
) -> None:
    before = {
        "recipes": platform.consumed("recipes", "user.updated"),
        "media": platform.consumed("media", "recipe.created"),
    }
    published: dict[str, dict[str, str]] = {}  # queue → message id → kind
    for queue in CONSUMER_QUEUES:
        published[queue] = {}
        for kind, body in poison_bodies(queue).items():
            published[queue][publish_to_queue(platform, queue, body, kind)] = kind

    def parked(queue: str) -> dict[str, dict[str, Any]]:
        found = {m["properties"].get("message_id"): m for m in platform.dead_letters(queue)}
        return {mid: found[mid] for mid in published[queue] if mid in found}

    for queue, ids in published.items():

        def all_parked(queue: str = queue, expected: int = len(ids)) -> dict[str, Any] | None:
            found = parked(queue)
            return found if len(found) == expected else None

        letters = wait_until(all_parked, within=30, what=f"the poison messages in {queue}.dlq")
        for message_id, letter in letters.items():
            headers = letter["properties"]["headers"]
            reason = str(headers.get("x-dead-letter-reason", ""))
            assert reason.startswith("undecodable message"), (queue, reason)
            assert headers.get("x-original-queue") == queue
            if published[queue][message_id] == "unknown-version":
                assert "v99" in reason, reason

    # Valid traffic after the poison: every consumer still applies it.
    user = register(gateway, "customer", prefix="after_poison")
    new_email = f"{user.username}.new@example.com"
    changed = gateway.patch("/api/auth/me/", headers=user.headers, json={"email": new_email})
    assert changed.status_code == 200, changed.text
    created = gateway.post(
        "/api/recipes/",
        headers=accounts["seller"].headers,
        data={"title": "After the poison", "description": "d", "ingredients": "i"},
        files={"image": ("after.jpg", small_jpeg(), "image/jpeg")},
    )
    assert created.status_code == 201, created.text
    recipe_id = created.json()["id"]

    def copies_updated() -> bool:
        notifier = platform.query(
            "notifier", "SELECT email FROM recipients WHERE user_id = %s", user.user_id
        )
        backup = platform.query(
            "backup", "SELECT email FROM users WHERE user_id = %s", user.user_id
        )
        return notifier == [(new_email,)] and backup == [(new_email,)]

    wait_until(copies_updated, within=60, what="the notifier's and backup's copies of the user")
    wait_until(
        lambda: gateway.get(f"/api/recipes/{recipe_id}/").json()["image_status"] == "ready",
        within=60,
        what="the image processed (media consumed recipe.created, recipes the image_ready)",
    )
    wait_until(
        lambda: platform.consumed("recipes", "user.updated") > before["recipes"],
        within=30,
        what="the recipes worker to handle user.updated",
    )
    assert platform.consumed("media", "recipe.created") > before["media"]
    # The poison stays parked (nothing replays it) and nothing else was dead-lettered.
    assert platform.unexpected_dead_letters() == dict.fromkeys(CONSUMER_QUEUES, 0)

    total = sum(len(ids) for ids in published.values())
    row = reliability_report.row("poison")
    row.load = f"{total} poison + valid events"
    row.faults = f"{total} poison messages ({len(CONSUMER_QUEUES)} queues x 3 kinds)"
    row.accepted = "-"
    row.verified = f"{total} parked with reason; 4 consumers applied the next valid events"
    row.lost = "0"
    row.duplicated = "0"
    row.outcome = "pass"
