"""``backup migrate`` declares the worker's queue: events sent before the worker starts wait."""

import asyncio
from typing import Any

import aio_pika
import pytest

from backup.db import create_engine, create_session_maker
from backup.main import build_consumer, migrate
from backup.settings import QUEUE_NAME, Settings
from contracts import EXCHANGE_NAME, RecipeCreated, ScheduleTick, UserDeleted
from servicekit.bus import dead_letter_queue_name, retry_queue_name
from servicekit.testing import Vhost, VhostAdmin

pytestmark = pytest.mark.integration


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
    clean_database: str, amqp_url: str, vhost: Vhost, vhost_admin: VhostAdmin
) -> None:
    settings = Settings(database_url=clean_database, amqp_url=amqp_url, retry_delays=(0.05, 0.1))
    await asyncio.to_thread(migrate, settings)

    assert arguments(vhost_admin, vhost, QUEUE_NAME)["x-queue-type"] == "quorum"
    assert arguments(vhost_admin, vhost, QUEUE_NAME)["x-delivery-limit"] == settings.delivery_limit
    for step, delay in enumerate(settings.retry_delays):
        retry = arguments(vhost_admin, vhost, retry_queue_name(QUEUE_NAME, step))
        assert retry["x-message-ttl"] == int(delay * 1000)
    assert vhost_admin.queue(vhost.name, dead_letter_queue_name(QUEUE_NAME))["durable"] is True
    session_maker = create_session_maker(create_engine(settings.database_url))
    consumed = build_consumer(settings, session_maker).routing_keys
    assert {UserDeleted.event_type, ScheduleTick.event_type} <= set(consumed)
    # An event the worker does not consume is not routed to its queue.
    routed = await routed_keys(amqp_url, QUEUE_NAME, [*consumed, RecipeCreated.event_type])
    assert routed == set(consumed)
