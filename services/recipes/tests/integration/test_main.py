"""``recipes migrate`` declares the worker's queue: events sent before the worker starts wait."""

import asyncio
from typing import Any

import aio_pika
import httpx
import pytest
from opentelemetry.trace import SpanKind

from contracts import EXCHANGE_NAME, RecipeCreated, RecipeImageReady, UserDeleted
from recipes.db import create_engine, create_session_maker
from recipes.main import build_worker_consumer, migrate
from recipes.settings import QUEUE_NAME, Settings
from servicekit.bus import dead_letter_queue_name, retry_queue_name
from servicekit.testing import Vhost, VhostAdmin
from servicekit.tracing import capture_spans

pytestmark = pytest.mark.integration

#: A route the test can call without setting anything up first.
TRACED_ROUTE = "/api/recipes/"


async def routed_keys(amqp_url: str, queue: str, routing_keys: list[str]) -> set[str]:
    """Publish one message per routing key; the keys of those that reached ``queue``."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()  # with publisher confirms: queued once published
        exchange = await channel.get_exchange(EXCHANGE_NAME)
        for key in routing_keys:
            await exchange.publish(aio_pika.Message(b"{}"), routing_key=key, timeout=10)
        declared = await channel.get_queue(queue)
        received: set[str] = set()
        while (message := await declared.get(fail=False, timeout=10)) is not None:
            received.add(str(message.routing_key))
            await message.ack()
        return received


def arguments(vhost_admin: VhostAdmin, vhost: Vhost, queue: str) -> dict[str, Any]:
    found = vhost_admin.queue(vhost.name, queue)["arguments"]
    assert isinstance(found, dict)
    return found


async def test_migrate_declares_the_worker_queue_with_its_bindings_and_retries(
    settings: Settings, amqp_url: str, vhost: Vhost, vhost_admin: VhostAdmin
) -> None:
    settings = settings.model_copy(update={"amqp_url": amqp_url})
    await asyncio.to_thread(migrate, settings)

    assert arguments(vhost_admin, vhost, QUEUE_NAME)["x-queue-type"] == "quorum"
    assert arguments(vhost_admin, vhost, QUEUE_NAME)["x-delivery-limit"] == settings.delivery_limit
    for step, delay in enumerate(settings.retry_delays):
        retry = arguments(vhost_admin, vhost, retry_queue_name(QUEUE_NAME, step))
        assert retry["x-message-ttl"] == int(delay * 1000)
    assert vhost_admin.queue(vhost.name, dead_letter_queue_name(QUEUE_NAME))["durable"] is True
    session_maker = create_session_maker(create_engine(settings.database_url))
    consumed = build_worker_consumer(settings, session_maker).routing_keys
    assert {UserDeleted.event_type, RecipeImageReady.event_type} <= set(consumed)
    # An event the worker does not consume (the service's own) is not routed to its queue.
    routed = await routed_keys(amqp_url, QUEUE_NAME, [*consumed, RecipeCreated.event_type])
    assert routed == set(consumed)


async def test_a_request_makes_one_server_span_and_a_probe_none(client: httpx.AsyncClient) -> None:
    spans = capture_spans()
    spans.clear()
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get(TRACED_ROUTE)).status_code == 200
    served = [span.name for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert served == [f"GET {TRACED_ROUTE}"]
