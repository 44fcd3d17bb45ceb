"""What the broker holds: where routing keys lead, how queues were declared, what was published."""

import re
from typing import Any

import aio_pika

from contracts import EXCHANGE_NAME
from servicekit._bus import RetryPolicy, dead_letter_queue_name, retry_queue_name
from servicekit._topology import consumer_queue_policy, policy_name
from servicekit.testing.servers import Vhost, VhostAdmin


async def routed_keys(amqp_url: str, queue: str, routing_keys: list[str]) -> set[str]:
    """Publish one empty message per routing key; the keys of those that reached ``queue``."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()  # publisher confirms: queued once published
        exchange = await channel.get_exchange(EXCHANGE_NAME)
        for key in routing_keys:
            await exchange.publish(aio_pika.Message(b"{}"), routing_key=key, timeout=10)
        declared = await channel.get_queue(queue)
        received: set[str] = set()
        while (message := await declared.get(fail=False, timeout=10)) is not None:
            received.add(str(message.routing_key))
            await message.ack()
        return received


def queue_arguments(vhost_admin: VhostAdmin, vhost: Vhost, queue: str) -> dict[str, Any]:
    """The ``x-`` arguments a queue was declared with, from the management API."""
    found = vhost_admin.queue(vhost.name, queue)["arguments"]
    assert isinstance(found, dict)
    return found


def assert_queue_topology(
    vhost_admin: VhostAdmin, vhost: Vhost, queue: str, policy: RetryPolicy
) -> None:
    """``queue`` and its delay and dead-letter queues are quorum queues that dead-letter
    at-least-once, and its policy carries the delivery limit (what ``migrate`` leaves)."""
    found = vhost_admin.queue(vhost.name, queue)
    arguments = found["arguments"]
    assert isinstance(arguments, dict)
    assert arguments["x-queue-type"] == "quorum"
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    # The policy itself: the queue's own view of it follows a few seconds later (statistics).
    applied = vhost_admin.policy(vhost.name, policy_name(queue))
    assert applied["pattern"] == f"^{re.escape(queue)}$"
    assert applied["definition"] == consumer_queue_policy(policy)
    for step in range(len(policy.delays)):
        retry = queue_arguments(vhost_admin, vhost, retry_queue_name(queue, step))
        assert retry["x-queue-type"] == "quorum"
        assert retry["x-dead-letter-routing-key"] == queue
        assert retry["x-dead-letter-strategy"] == "at-least-once"
    dlq = queue_arguments(vhost_admin, vhost, dead_letter_queue_name(queue))
    assert dlq["x-queue-type"] == "quorum"


async def collecting_queue(
    amqp_url: str, binding_key: str = "#"
) -> tuple[aio_pika.abc.AbstractConnection, list[str]]:
    """A plain queue bound to the events ``binding_key`` matches, recording message ids."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        EXCHANGE_NAME, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue("test.collector", durable=True)
    await queue.bind(exchange, binding_key)
    received: list[str] = []

    async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        received.append(str(message.message_id))
        await message.ack()

    await queue.consume(collect)
    return connection, received
