"""Queue topology (servicekit._topology): settings change between deploys, old queues migrate,
and nothing a message goes through can drop it silently. Against the real broker."""

from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from contracts import EXCHANGE_NAME, RecipeDeleted, make_envelope
from servicekit._bus import (
    Bus,
    RetryPolicy,
    UnroutableError,
    dead_letter_queue_name,
    envelope_message,
    retry_queue_name,
    send_to_queue,
)
from servicekit._consumer import Consumer
from servicekit._db import SessionMaker
from servicekit._runtime import declare_queues
from servicekit._topology import HOLDING_SUFFIX, declare_topology
from servicekit.testing import Vhost, VhostAdmin, assert_queue_topology, eventually

from .helpers import deleted, record_effect

pytestmark = pytest.mark.integration

QUEUE = "t.topology"
#: Long enough that a message waiting in a delay queue stays there for the whole test.
HOUR = 3600.0


def consumer(session_maker: SessionMaker, policy: RetryPolicy) -> Consumer:
    declared = Consumer(
        queue=QUEUE, producer="test", session_maker=session_maker, retry_policy=policy
    )
    declared.on(RecipeDeleted, record_effect)
    return declared


async def publish_events(channel: AbstractChannel, count: int, first: int) -> set[str]:
    """``count`` events through the exchange (routed to the consumer queue); their ids."""
    exchange = await channel.get_exchange(EXCHANGE_NAME)
    ids = set()
    for n in range(first, first + count):
        envelope = make_envelope(deleted(n), producer="test")
        await exchange.publish(
            envelope_message(envelope, {}), routing_key=envelope.routing_key, timeout=10
        )
        ids.add(str(envelope.event_id))
    return ids


async def park(channel: AbstractChannel, queue: str, count: int, **properties: Any) -> set[str]:
    """``count`` messages straight into ``queue``, confirmed; their ids."""
    ids = set()
    for n in range(count):
        message_id = f"{queue}-{n}"
        await send_to_queue(
            channel, queue, aio_pika.Message(b"{}", message_id=message_id, **properties), timeout=10
        )
        ids.add(message_id)
    return ids


async def take_all(channel: AbstractChannel, queue: str) -> dict[str, aio_pika.IncomingMessage]:
    """Every message of ``queue`` (acked), by id: counted one by one, never from statistics."""
    declared = await channel.get_queue(queue, ensure=True)
    taken: dict[str, aio_pika.IncomingMessage] = {}
    while (message := await declared.get(no_ack=False, fail=False, timeout=10)) is not None:
        taken[str(message.message_id)] = message  # type: ignore[assignment]
        await message.ack()
    return taken


async def test_retry_delays_and_delivery_limit_change_between_deploys_without_loss(
    session_maker: SessionMaker,
    amqp_url: str,
    management_url: str,
    vhost: Vhost,
    vhost_admin: VhostAdmin,
) -> None:
    first = RetryPolicy(delays=(HOUR, 2 * HOUR), delivery_limit=10)
    await declare_queues(amqp_url, [consumer(session_maker, first)], management_url=management_url)
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        events = await publish_events(channel, 3, first=1)
        retries = await park(channel, retry_queue_name(QUEUE, 0), 2, expiration=HOUR)
        dead = await park(channel, dead_letter_queue_name(QUEUE), 1)

        # The next deploy: other delays, fewer steps, another limit. Both the migration and a
        # worker's own declaration accept it; before, both failed with PRECONDITION_FAILED.
        second = RetryPolicy(delays=(0.5,), delivery_limit=1)
        await declare_queues(
            amqp_url, [consumer(session_maker, second)], management_url=management_url
        )
        await declare_topology(connection, EXCHANGE_NAME, QUEUE, ["recipe.deleted"], second)
        assert_queue_topology(vhost_admin, vhost, QUEUE, second)

        assert set(await take_all(channel, QUEUE)) == events
        assert set(await take_all(channel, retry_queue_name(QUEUE, 0))) == retries
        assert set(await take_all(channel, dead_letter_queue_name(QUEUE))) == dead

        # The new limit is in force: a message delivered once without an ack is dead-lettered.
        [crashing] = await publish_events(channel, 1, first=10)
        queue = await channel.get_queue(QUEUE, ensure=True)

        async def dead_lettered() -> bool:
            message = await queue.get(no_ack=False, fail=False, timeout=10)
            if message is not None:  # a consumer that crashed: the message goes back
                await message.nack(requeue=True)
            dlq = await channel.get_queue(dead_letter_queue_name(QUEUE), ensure=True)
            parked = await dlq.get(no_ack=False, fail=False, timeout=10)
            if parked is None:
                return False
            await parked.ack()
            return parked.message_id == crashing

        await eventually(dead_lettered)

        # And back to a higher limit: raising it is a change like any other.
        await declare_queues(
            amqp_url, [consumer(session_maker, first)], management_url=management_url
        )
        assert_queue_topology(vhost_admin, vhost, QUEUE, first)


async def declare_previous_version(channel: AbstractChannel, delays: tuple[float, ...]) -> None:
    """The topology servicekit declared before: classic delay and dead-letter queues."""
    await channel.declare_queue(dead_letter_queue_name(QUEUE), durable=True)
    for step, delay in enumerate(delays):
        await channel.declare_queue(
            retry_queue_name(QUEUE, step),
            durable=True,
            arguments={
                "x-message-ttl": int(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": QUEUE,
            },
        )
    queue = await channel.declare_queue(
        QUEUE,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": 20,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_letter_queue_name(QUEUE),
        },
    )
    exchange = await channel.declare_exchange(
        EXCHANGE_NAME, aio_pika.ExchangeType.TOPIC, durable=True
    )
    await queue.bind(exchange, "recipe.deleted")


async def test_migrate_rebuilds_the_classic_queues_of_the_previous_version_keeping_messages(
    session_maker: SessionMaker,
    amqp_url: str,
    management_url: str,
    vhost: Vhost,
    vhost_admin: VhostAdmin,
) -> None:
    policy = RetryPolicy(delays=(0.5, HOUR), delivery_limit=5)
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        await declare_previous_version(channel, delays=(HOUR, HOUR, HOUR))
        events = await publish_events(channel, 2, first=1)
        soon = await park(channel, retry_queue_name(QUEUE, 0), 2)
        later = await park(channel, retry_queue_name(QUEUE, 1), 1)
        obsolete = await park(channel, retry_queue_name(QUEUE, 2), 1)
        dead = await park(channel, dead_letter_queue_name(QUEUE), 3)

        # A worker of the new version starting before migrate: it uses the old queues.
        await declare_topology(connection, EXCHANGE_NAME, QUEUE, ["recipe.deleted"], policy)

        await declare_queues(
            amqp_url, [consumer(session_maker, policy)], management_url=management_url
        )
        await declare_queues(
            amqp_url, [consumer(session_maker, policy)], management_url=management_url
        )  # idempotent

        queues = {q["name"]: q for q in vhost_admin.queues(vhost.name)}
        assert not [name for name in queues if name.endswith(HOLDING_SUFFIX)]
        for step in range(3):
            assert queues[retry_queue_name(QUEUE, step)]["type"] == "quorum"
        assert queues[dead_letter_queue_name(QUEUE)]["type"] == "quorum"
        assert set(await take_all(channel, dead_letter_queue_name(QUEUE))) == dead
        waiting = await take_all(channel, retry_queue_name(QUEUE, 1))
        assert set(waiting) == later
        # Moved back with the step's current delay as their own expiration.
        assert {m.expiration for m in waiting.values()} == {HOUR}

        # The first step's messages (0.5 s now) and the obsolete step's (moved back with the
        # last delay, an hour) reach the queue: the first by themselves, the other not yet.
        arrived: set[str] = set()

        async def retried() -> bool:
            arrived.update(await take_all(channel, QUEUE))
            return arrived >= events | soon

        await eventually(retried)
        assert arrived == events | soon
        assert set(await take_all(channel, retry_queue_name(QUEUE, 2))) == obsolete


async def test_a_copy_to_a_missing_queue_raises_instead_of_vanishing(amqp_url: str) -> None:
    """Before, a retry or dead letter sent to a missing queue was confirmed, then dropped."""
    bus = Bus(amqp_url)
    await bus.connect()
    try:
        with pytest.raises(UnroutableError):
            await bus.publish_to_queue("t.nowhere", aio_pika.Message(b"{}"))
    finally:
        await bus.close()
