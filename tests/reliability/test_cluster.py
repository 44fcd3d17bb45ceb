"""A real three-node RabbitMQ cluster (deploy/local/rabbitmq_cluster.py) behind haproxy.

The smoke test runs in ``make test`` (about a minute, most of it the cluster starting): the
platform's topology declared on the cluster, events published with confirms, the node leading
the consumer queue killed with SIGKILL mid-stream, and every event consumed afterwards, together
with what waited in the delay and dead-letter queues. The long scenario (the whole platform on
the cluster under the mixed load, every leader stopped and killed, a rolling restart) runs in
``make test-reliability`` only.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from rabbitmq_cluster import NODES, Cluster

from contracts import EXCHANGE_NAME, RecipeDeleted, make_envelope
from servicekit.bus import (
    Bus,
    HeaderValue,
    RetryPolicy,
    dead_letter_queue_name,
    retry_queue_name,
    send_to_queue,
)
from servicekit.testing import VhostAdmin
from servicekit.topology import BrokerAdmin, migrate_topology

pytestmark = pytest.mark.integration

QUEUE = "smoke.events"
EVENTS_PER_PHASE = 1000
BATCH = 100


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


class ConfirmedPublisher:
    """Publishes batches of events and retries a batch until the broker confirmed all of it.

    A failed batch is retried on a fresh connection (what the outbox relay's publisher does
    after a refusal): on 3.10, a channel whose first publish to a quorum queue comes right after
    its leader was killed can be refused until that node returns. Retrying may publish an event
    twice; consumers are idempotent, so the test counts distinct events.
    """

    def __init__(self, amqp_url: str) -> None:
        self._url = amqp_url
        self._bus: Bus | None = None
        self.sent: set[str] = set()
        self.failed_batches = 0

    async def publish(self, count: int) -> None:
        for _ in range(count // BATCH):
            items: list[tuple[Any, dict[str, HeaderValue]]] = [
                (make_envelope(_deleted(), producer="smoke"), {}) for _ in range(BATCH)
            ]
            await eventually(
                lambda batch=items: self._publish(batch),  # type: ignore[misc]
                within=90,
                what="a batch confirmed by the cluster",
            )
            self.sent.update(str(envelope.event_id) for envelope, _ in items)

    async def _publish(self, items: list[tuple[Any, dict[str, HeaderValue]]]) -> bool:
        try:
            if self._bus is None:
                self._bus = Bus(self._url, publish_timeout=5)
                await self._bus.connect(timeout=10)
            await self._bus.publish_many(items)
            return True
        except Exception:
            self.failed_batches += 1
            bus, self._bus = self._bus, None
            if bus is not None:
                await _quietly(bus.close())
            return False

    async def close(self) -> None:
        if self._bus is not None:
            await self._bus.close()


def _deleted() -> RecipeDeleted:
    return RecipeDeleted(
        recipe_id=uuid.uuid4().int % 1_000_000, seller_id=1, deleted_at=datetime.now(UTC)
    )


async def _quietly(closing: Awaitable[Any]) -> None:
    try:
        await asyncio.wait_for(closing, timeout=5)
    except Exception:  # a connection to a dead node: nothing to close cleanly
        return


async def take_ids(amqp_url: str, queue: str, until: set[str], within: float) -> set[str]:
    """Consume ``queue`` (acking) until every id of ``until`` arrived or time runs out."""
    received: set[str] = set()
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=200)
        declared = await channel.get_queue(queue, ensure=True)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received.add(str(message.message_id))
            await message.ack()

        await declared.consume(on_message)

        async def all_arrived() -> bool:
            return until <= received

        with contextlib.suppress(AssertionError):  # the caller names what is missing
            await eventually(all_arrived, within=within, what=f"every message of {queue}")
    return received


def whole(cluster: Cluster) -> Cluster:
    """The cluster with its three nodes running (an earlier test may have left one down)."""
    for n in NODES:
        if cluster.pid(n) is None:
            cluster.start_and_wait(n)
    return cluster


async def test_a_killed_queue_leader_loses_nothing_on_a_three_node_cluster(
    rabbitmq_cluster: Cluster, cluster_admin: VhostAdmin, run_id: str
) -> None:
    whole(rabbitmq_cluster)
    vhost = f"t_{run_id}_smoke"
    amqp_url = cluster_admin.create(vhost)
    try:
        policy = RetryPolicy(delays=(3600.0,), delivery_limit=5)
        async with await aio_pika.connect(amqp_url) as connection:
            admin = BrokerAdmin(rabbitmq_cluster.management_url, vhost)
            await migrate_topology(
                connection, admin, EXCHANGE_NAME, QUEUE, ["recipe.deleted"], policy
            )
            channel = await connection.channel()
            waiting = {f"retry-{n}" for n in range(20)}
            for message_id in waiting:
                message = aio_pika.Message(b"{}", message_id=message_id, expiration=3600)
                await send_to_queue(channel, retry_queue_name(QUEUE, 0), message, timeout=10)
            parked = {f"dead-{n}" for n in range(20)}
            for message_id in parked:
                message = aio_pika.Message(b"{}", message_id=message_id)
                await send_to_queue(channel, dead_letter_queue_name(QUEUE), message, timeout=10)

        publisher = ConfirmedPublisher(amqp_url)
        try:
            await publisher.publish(EVENTS_PER_PHASE)
            leader = rabbitmq_cluster.leader(vhost, QUEUE)
            killed_at = time.monotonic()
            rabbitmq_cluster.kill(leader)
            await publisher.publish(EVENTS_PER_PHASE)
            recovered_in = time.monotonic() - killed_at
        finally:
            await publisher.close()

        received = await take_ids(amqp_url, QUEUE, publisher.sent, within=60)
        assert not publisher.sent - received, f"{len(publisher.sent - received)} events lost"
        assert len(publisher.sent) == 2 * EVENTS_PER_PHASE
        # What waited in the quorum delay and dead-letter queues survived the leader's death.
        left = await take_ids(amqp_url, retry_queue_name(QUEUE, 0), waiting, within=30)
        assert left == waiting
        assert await take_ids(amqp_url, dead_letter_queue_name(QUEUE), parked, within=30) == parked
        print(
            f"cluster smoke: {len(publisher.sent)} events confirmed, node {leader} killed, "
            f"{publisher.failed_batches} batches retried, publishing done {recovered_in:.1f}s "
            "after the kill; 0 lost"
        )
    finally:
        cluster_admin.delete(vhost)
