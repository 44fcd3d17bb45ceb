"""A hostile X-Request-ID through the gateway (issue 15): the outbox drains, nothing twice.

200 x 'é' sent as latin-1 bytes once became an event's AMQP correlation id (400 bytes in UTF-8,
the limit is 255), could never be published, and made the relay re-send its batch-mates every
second. Now the gateway replaces such an id, servicekit would too, and the publisher would not
put it in a property; this test sends it the way the client did.
"""

import uuid

import httpx
import psycopg
import pytest
from conftest import RunningPlatform

from servicekit._request_ids import MAX_REQUEST_ID_LENGTH
from servicekit.testing import wait_until

pytestmark = pytest.mark.integration

PASSWORD = "Gooseberry-Crumble-42"

HOSTILE_IDS = [
    "é".encode("latin-1") * 200,
    b"r" * (MAX_REQUEST_ID_LENGTH + 1),
    b"plain-and-valid-42",
]


def consumed(platform: RunningPlatform, service: str, outcome: str) -> float:
    """``user.registered`` events a worker finished with ``outcome``, from its /metrics."""
    port = platform.health_port(service)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    labels = ('event_type="user.registered"', f'outcome="{outcome}"')
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("events_consumed_total{") and all(label in line for label in labels)
    )


def auth_outbox(platform: RunningPlatform) -> tuple[int, int]:
    """Rows pending in the auth service's outbox, and rows quarantined."""
    url = f"{platform.env['PLATFORM_DB_BASE_URL']}{platform.env['PLATFORM_DB_PREFIX']}auth"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        pending = conn.execute("SELECT count(*) FROM outbox_messages").fetchone()
        quarantined = conn.execute("SELECT count(*) FROM outbox_quarantine").fetchone()
    assert pending is not None and quarantined is not None
    return int(pending[0]), int(quarantined[0])


def test_hostile_request_ids_are_replaced_and_every_event_is_delivered_once(
    running_platform: RunningPlatform,
) -> None:
    services = ("notifier", "backup")
    handled = {s: consumed(running_platform, s, "handled") for s in services}
    duplicates = {s: consumed(running_platform, s, "duplicate") for s in services}
    with httpx.Client(base_url=running_platform.gateway_url, timeout=30) as client:
        for sent in HOSTILE_IDS:
            name = f"rid_{uuid.uuid4().hex[:8]}"
            response = client.post(
                "/api/auth/register/",
                json={
                    "username": name,
                    "password": PASSWORD,
                    "email": f"{name}@example.com",
                    "role": "customer",
                },
                headers=[(b"X-Request-ID", sent)],
            )
            assert response.status_code == 201, response.text
            answered = response.headers["x-request-id"].encode("latin-1")
            valid = len(sent) <= MAX_REQUEST_ID_LENGTH and sent.isascii()
            assert (answered == sent) == valid, (sent[:20], answered)

    wait_until(
        lambda: auth_outbox(running_platform) == (0, 0), within=60, what="the outbox drained"
    )

    def all_handled() -> bool:
        return all(
            consumed(running_platform, s, "handled") >= handled[s] + len(HOSTILE_IDS)
            for s in services
        )

    wait_until(all_handled, within=60, what="every user.registered handled by each consumer")
    assert {s: consumed(running_platform, s, "handled") for s in services} == {
        s: handled[s] + len(HOSTILE_IDS) for s in services
    }
    assert {s: consumed(running_platform, s, "duplicate") for s in services} == duplicates
