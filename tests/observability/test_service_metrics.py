"""The metrics docs/observability.md names are on /metrics and move when the platform works.

Recipes and media are read while a recipe is created and resized (``recipe_flow``) and a
broken ``recipe.created`` is retried and dead-lettered: the recipes API's /metrics on its own
port (the gateway hides it), the media and recipes workers' /metrics from their health app.
Notifier and backup run their use cases in this process (planning and sending a digest, writing
an export) and their worker's health app is scraped before and after.

All of it runs in one process, so every /metrics here serves the same registry: the checks read
each metric where it belongs in production, but cannot show that another service lacks it.
"""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import psycopg
import pytest
from fastapi import FastAPI
from observability.recipe_flow import (
    RecipeFlow,
    free_port,
    metric_names,
    metric_value,
)
from prometheus_client.parser import text_string_to_metric_families

import backup.main
import backup.worker
from backup.settings import Settings as BackupSettings
from contracts import (
    EXCHANGE_NAME,
    Event,
    ImageReference,
    RecipeCreated,
    UserRegistered,
    make_envelope,
)
from servicekit import libpq_url, upgrade_database
from servicekit._bus import dead_letter_queue_name, envelope_message
from servicekit._health import Readiness, health_app
from servicekit.testing import Vhost, VhostAdmin, eventually

pytestmark = pytest.mark.integration
#: ``recipe_flow`` and the fixtures it needs (not a conftest.py: see that module).
pytest_plugins = ["observability.flow_fixtures"]

#: Every metric each process must serve (docs/observability.md, the services' metrics.py).
SERVICEKIT_WORKER_METRICS = {
    "events_published_total",
    "events_consumed_total",
    "events_retried_total",
    "events_dead_lettered_total",
    "event_handler_seconds_count",
    "outbox_backlog",
    "outbox_oldest_age_seconds",
    "consumers_attached",
}
RECIPES_API_METRICS = {
    "http_requests_total",
    "http_request_duration_seconds_count",
    "events_published_total",
    "outbox_backlog",
    "outbox_oldest_age_seconds",
}
MEDIA_METRICS = SERVICEKIT_WORKER_METRICS | {
    "media_image_jobs_total",
    "media_image_processing_seconds_count",
    "media_image_queue_wait_seconds_count",
}
NOTIFIER_METRICS = {
    "notifier_digests_sent_total",
    "notifier_digests_due",
    "notifier_mail_failures_total",
}
BACKUP_METRICS = {
    "backup_last_success_timestamp_seconds",
    "backup_runs_total",
    "backup_rows_exported",
}

Scrape = Callable[[], Awaitable[str]]


def sample_names(exposition: str) -> set[str]:
    """Names of the samples present (a labelled metric has none before its first use)."""
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def scraper(app: FastAPI) -> Scrape:
    async def scrape() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
            response = await client.get("/metrics")
        assert response.status_code == 200
        return response.text

    return scrape


def broken_recipe_created(recipes_url: str) -> RecipeCreated:
    """An image reference the recipes API answers 405 for (a route that only takes POST): not
    one of the statuses that mean the original is gone, so a transient failure to media."""
    now = datetime.now(UTC)
    return RecipeCreated(
        recipe_id=990_001,
        seller_id=41,
        seller_username="chef",
        title="Unreachable image",
        created_at=now,
        updated_at=now,
        image=ImageReference(
            image_version=1,
            url=f"{recipes_url}/api/recipes/1/rate/",
            sha256="0" * 64,
            size=10,
            content_type="image/jpeg",
            expires_at=now + timedelta(hours=1),
        ),
    )


async def publish_raw(amqp_url: str, event: Event) -> None:
    """Straight onto the exchange, as another service's relay would (bypassing our counters)."""
    envelope = make_envelope(event, producer="observability-test")
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EXCHANGE_NAME)
        await exchange.publish(
            envelope_message(envelope, {}), routing_key=envelope.routing_key, timeout=10
        )


async def wait_for_dead_letter(amqp_url: str, queue: str) -> None:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        parked = await channel.get_queue(dead_letter_queue_name(queue))

        async def arrived() -> bool:
            message = await parked.get(fail=False, timeout=5)
            if message is None:
                return False
            await message.ack()
            return True

        await eventually(arrived, what=f"a message in {dead_letter_queue_name(queue)}")


async def test_recipes_and_media_metrics_move_with_a_recipe(recipe_flow: RecipeFlow) -> None:
    where = ("recipes-api", "recipes-worker", "media")
    before = {name: await recipe_flow.scrape(name) for name in where}

    created = await recipe_flow.create_recipe(headers={})
    await recipe_flow.wait_until_image_ready(created["id"])
    await publish_raw(recipe_flow.amqp_url, broken_recipe_created(recipe_flow.recipes_url))
    await wait_for_dead_letter(recipe_flow.amqp_url, "media.events")

    post = {"method": "POST", "route": "/api/recipes/"}
    media_queue = {"queue": "media.events"}
    #: (where, sample, labels) → how much it must have grown.
    expected: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {
        ("recipes-api", "http_requests_total", (*post.items(), ("status", "201"))): 1,
        ("recipes-api", "http_request_duration_seconds_count", tuple(post.items())): 1,
        ("recipes-api", "events_published_total", (("event_type", "recipe.created"),)): 1,
        (
            "recipes-worker",
            "events_consumed_total",
            (
                ("queue", "recipes.events"),
                ("event_type", "recipe.image_ready"),
                ("outcome", "handled"),
            ),
        ): 1,
        (
            "media",
            "events_consumed_total",
            (*media_queue.items(), ("event_type", "recipe.created"), ("outcome", "handled")),
        ): 1,
        ("media", "event_handler_seconds_count", tuple(media_queue.items())): 1,
        ("media", "events_published_total", (("event_type", "recipe.image_ready"),)): 1,
        # The broken event: three attempts (delays 0.05, 0.1), then the dead-letter queue.
        ("media", "events_retried_total", tuple(media_queue.items())): 2,
        ("media", "events_dead_lettered_total", tuple(media_queue.items())): 1,
        ("media", "media_image_jobs_total", (("outcome", "ready"),)): 1,
        ("media", "media_image_jobs_total", (("outcome", "error"),)): 3,
        ("media", "media_image_processing_seconds_count", ()): 1,
        ("media", "media_image_queue_wait_seconds_count", ()): 4,
    }

    async def deltas() -> dict[tuple[str, str, tuple[tuple[str, str], ...]], float]:
        after = {name: await recipe_flow.scrape(name) for name in where}
        return {
            key: metric_value(after[key[0]], key[1], **dict(key[2]))
            - metric_value(before[key[0]], key[1], **dict(key[2]))
            for key in expected
        }

    # Counters are bumped after the commit the GET or the dead-letter queue already shows.
    async def all_moved() -> bool:
        return await deltas() == expected

    try:
        await eventually(all_moved, within=10, what="every counter to move")
    except AssertionError:
        assert await deltas() == expected  # shows which did not
    after = {name: await recipe_flow.scrape(name) for name in where}
    assert sample_names(after["recipes-api"]) >= RECIPES_API_METRICS
    assert sample_names(after["media"]) >= MEDIA_METRICS
    assert SERVICEKIT_WORKER_METRICS - {"events_retried_total", "events_dead_lettered_total"} <= (
        sample_names(after["recipes-worker"])
    )
    for name, queue in (("media", "media.events"), ("recipes-worker", "recipes.events")):
        assert metric_value(after[name], "consumers_attached", queue=queue) == 1
    assert {"outbox_backlog", "outbox_oldest_age_seconds"} <= metric_names(after["media"])


@pytest.fixture
def notifier_worker(
    make_database: Callable[[str], str], vhost: Vhost, vhost_admin: VhostAdmin, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """``notifier migrate`` then ``notifier worker`` as processes; yields (health URL, DB URL).

    Not in this process: the notifier's models and the recipes service's share table names
    (``recipes``, ``ratings``) in SQLModel's one metadata, so both cannot be imported at once.
    """
    url = make_database("obs_notifier")
    port = free_port()
    env = {
        **os.environ,
        "NOTIFIER_DATABASE_URL": url,
        "NOTIFIER_AMQP_URL": vhost.url,
        # Where migrate sets the queue policies (a container maps the management port anywhere).
        "NOTIFIER_AMQP_MANAGEMENT_URL": vhost_admin.management_url,
        "NOTIFIER_HEALTH_PORT": str(port),
        "NOTIFIER_DATA_DIR": str(tmp_path / "notifier"),
        "NOTIFIER_DISPATCH_INTERVAL": "0.1",
        "NOTIFIER_OUTBOX_POLL_INTERVAL": "0.1",
        "OTEL_TRACES_EXPORTER": "none",
    }
    command = [sys.executable, "-m", "notifier.main"]
    migrated = subprocess.run([*command, "migrate"], env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr
    with (tmp_path / "notifier-worker.log").open("w") as log:
        worker = subprocess.Popen(
            [*command, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    health = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _ready(health):
            assert worker.poll() is None, (tmp_path / "notifier-worker.log").read_text()
            assert time.monotonic() < deadline, "the notifier worker did not get ready"
            time.sleep(0.1)
        yield health, url
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def _ready(health: str) -> bool:
    try:
        return httpx.get(f"{health}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


async def test_notifier_digest_metrics_move_when_its_worker_sends_a_digest(
    notifier_worker: tuple[str, str], vhost: Vhost
) -> None:
    health, database_url = notifier_worker

    async def scrape() -> str:
        async with httpx.AsyncClient(base_url=health) as client:
            return (await client.get("/metrics")).text

    before = await scrape()
    now = datetime.now(UTC)
    await publish_raw(vhost.url, customer_registered(now))
    await publish_raw(vhost.url, recipe_for_the_digest(now))
    handled = {"queue": "notifier.events", "outcome": "handled"}

    async def copied() -> bool:
        grown = metric_value(await scrape(), "events_consumed_total", **handled)
        return grown - metric_value(before, "events_consumed_total", **handled) == 2

    await eventually(copied, what="the notifier to copy the user and the recipe")
    # Two digests planned as the 06:00 scan plans them: one to send now, one deferred.
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO deliveries (kind, user_id, digest_date, as_of, status, attempts,"
            " next_attempt_at, created_at) VALUES"
            " ('digest', 7, %(today)s, %(now)s, 'pending', 0, NULL, now()),"
            " ('digest', 7, %(yesterday)s, %(now)s, 'pending', 0, %(later)s, now())",
            {
                "today": now.date(),
                "yesterday": now.date() - timedelta(days=1),
                "now": now,
                "later": now + timedelta(hours=1),
            },
        )

    async def digest_sent() -> str | None:
        exposition = await scrape()
        sent = metric_value(exposition, "notifier_digests_sent_total") - metric_value(
            before, "notifier_digests_sent_total"
        )
        return exposition if sent == 1 else None

    after: str = await eventually(digest_sent, what="the digest to be sent")
    assert NOTIFIER_METRICS - {"notifier_mail_failures_total"} <= sample_names(after)
    assert "notifier_mail_failures_total" in metric_names(after)

    async def one_due() -> bool:
        return metric_value(await scrape(), "notifier_digests_due") == 1

    # Refreshed after each dispatch round: the deferred digest stays due.
    await eventually(one_due, what="notifier_digests_due to count the deferred digest")


def customer_registered(now: datetime) -> UserRegistered:
    joined = now - timedelta(days=30)
    return UserRegistered(
        user_id=7,
        username="gourmet",
        email="gourmet@example.com",
        role="customer",
        date_joined=joined,
        updated_at=joined,
        version=1,
    )


def recipe_for_the_digest(now: datetime) -> RecipeCreated:
    made = now - timedelta(hours=3)
    return RecipeCreated(
        recipe_id=5,
        seller_id=41,
        seller_username="chef",
        title="Gooseberry crumble",
        created_at=made,
        updated_at=made,
    )


async def test_backup_last_success_moves_when_an_export_is_written(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    """The backup worker's export, run in-process, and its health app's /metrics."""
    url = make_database("obs_backup")
    upgrade_database(backup.main.SERVICE_DIR, url)
    settings = BackupSettings(database_url=url, data_dir=tmp_path)
    scrape = scraper(health_app(Readiness()))
    before = await scrape()
    started = time.time()

    slot = datetime.now(UTC).replace(microsecond=0)
    result: Any = await asyncio.to_thread(
        backup.worker.build_exporter(settings).export_slot, slot, trigger="test"
    )
    after = await scrape()

    assert result.written
    assert sample_names(after) >= BACKUP_METRICS
    assert metric_value(after, "backup_last_success_timestamp_seconds") >= started
    assert metric_value(before, "backup_last_success_timestamp_seconds") < started
    assert (
        metric_value(after, "backup_runs_total", outcome="written")
        - metric_value(before, "backup_runs_total", outcome="written")
        == 1
    )
