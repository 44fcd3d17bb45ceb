"""The cluster smoke scenario, on any three-node cluster that offers ``SmokeCluster``.

The platform's topology for one queue declared on the cluster, events published with confirms,
the node leading the queue killed mid-stream, and every event consumed afterwards, together
with what waited in the delay and dead-letter queues. Two clusters run it: the local one behind
haproxy (deploy/local/rabbitmq_cluster.py, tests/reliability/test_cluster.py) and compose's
cluster profile (tests/containers/test_compose_cluster.py), whose clients have one address per
node instead of a proxy: a client that loses its node goes on with the next address.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aio_pika

from contracts import EXCHANGE_NAME, RecipeDeleted, make_envelope
from servicekit._bus import (
    Bus,
    HeaderValue,
    RetryPolicy,
    dead_letter_queue_name,
    retry_queue_name,
    send_to_queue,
)
from servicekit._topology import BrokerAdmin, migrate_topology
from servicekit.testing import eventually

QUEUE = "smoke.events"
EVENTS_PER_PHASE = 1000
BATCH = 100


class SmokeCluster(Protocol):
    """What the scenario needs of a cluster: addresses, its queues' leaders, a crash."""

    @property
    def management_url(self) -> str:
        """The management API (credentials in it unless guest's)."""
        ...

    def amqp_urls(self, vhost: str) -> list[str]:
        """The addresses a client of ``vhost`` may use, tried in this order."""
        ...

    def leader(self, vhost: str, queue: str) -> int:
        """Which node (1, 2 or 3) leads quorum queue ``queue`` of ``vhost``."""
        ...

    def kill(self, n: int) -> None:
        """Node N dies at once (SIGKILL): nothing flushed, nobody told."""
        ...


class ConfirmedPublisher:
    """Publishes batches of events and retries a batch until the broker confirmed all of it.

    A failed batch is retried on a fresh connection, to the next address (what the outbox
    relay's publisher does after a refusal): on 3.10, a channel whose first publish to a quorum
    queue comes right after its leader was killed can be refused until that node returns.
    Retrying may publish an event twice; consumers are idempotent, so the test counts distinct
    events.
    """

    def __init__(self, amqp_urls: Sequence[str]) -> None:
        self._urls = list(amqp_urls)
        self._next_url = 0
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
                interval=0.1,
                what="a batch confirmed by the cluster",
            )
            self.sent.update(str(envelope.event_id) for envelope, _ in items)

    async def _publish(self, items: list[tuple[Any, dict[str, HeaderValue]]]) -> bool:
        try:
            if self._bus is None:
                self._bus = Bus(self._urls[self._next_url], publish_timeout=5)
                await self._bus.connect(timeout=10)
            outcomes = await self._bus.publish_many(items)
            # publish_many reports refusals instead of raising: a batch counts once all of it
            # was confirmed.
            refused = [outcome for outcome in outcomes if outcome is not None]
            if refused:
                raise RuntimeError(f"{len(refused)} not confirmed, first: {refused[0]}")
            return True
        except Exception:
            self.failed_batches += 1
            self._next_url = (self._next_url + 1) % len(self._urls)
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


async def connect_to_any(amqp_urls: Sequence[str]) -> aio_pika.abc.AbstractRobustConnection:
    """A robust connection to the first address that answers (a killed node's does not)."""
    for url in amqp_urls[:-1]:
        with contextlib.suppress(Exception):
            return await aio_pika.connect_robust(url, timeout=10)
    return await aio_pika.connect_robust(amqp_urls[-1])


async def take_ids(
    amqp_urls: Sequence[str], queue: str, until: set[str], within: float
) -> set[str]:
    """Consume ``queue`` (acking) until every id of ``until`` arrived or time runs out."""
    received: set[str] = set()
    connection = await connect_to_any(amqp_urls)
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
            await eventually(
                all_arrived, within=within, interval=0.1, what=f"every message of {queue}"
            )
    return received


@dataclass(frozen=True)
class SmokeOutcome:
    sent: int
    killed: int
    failed_batches: int
    recovered_in: float

    def summary(self) -> str:
        return (
            f"cluster smoke: {self.sent} events confirmed, node {self.killed} killed, "
            f"{self.failed_batches} batches retried, publishing done {self.recovered_in:.1f}s "
            "after the kill; 0 lost"
        )


async def kill_the_queue_leader_midstream(cluster: SmokeCluster, vhost: str) -> SmokeOutcome:
    """The scenario on ``vhost`` (which exists): asserts that nothing was lost."""
    amqp_urls = cluster.amqp_urls(vhost)
    policy = RetryPolicy(delays=(3600.0,), delivery_limit=5)
    async with await aio_pika.connect(amqp_urls[0]) as connection:
        admin = BrokerAdmin(cluster.management_url, vhost)
        await migrate_topology(connection, admin, EXCHANGE_NAME, QUEUE, ["recipe.deleted"], policy)
        channel = await connection.channel()
        waiting = {f"retry-{n}" for n in range(20)}
        for message_id in waiting:
            message = aio_pika.Message(b"{}", message_id=message_id, expiration=3600)
            await send_to_queue(channel, retry_queue_name(QUEUE, 0), message, timeout=10)
        parked = {f"dead-{n}" for n in range(20)}
        for message_id in parked:
            message = aio_pika.Message(b"{}", message_id=message_id)
            await send_to_queue(channel, dead_letter_queue_name(QUEUE), message, timeout=10)

    publisher = ConfirmedPublisher(amqp_urls)
    try:
        await publisher.publish(EVENTS_PER_PHASE)
        leader = cluster.leader(vhost, QUEUE)
        killed_at = time.monotonic()
        cluster.kill(leader)
        await publisher.publish(EVENTS_PER_PHASE)
        recovered_in = time.monotonic() - killed_at
    finally:
        await publisher.close()

    received = await take_ids(amqp_urls, QUEUE, publisher.sent, within=60)
    assert not publisher.sent - received, f"{len(publisher.sent - received)} events lost"
    assert len(publisher.sent) == 2 * EVENTS_PER_PHASE
    # What waited in the quorum delay and dead-letter queues survived the leader's death.
    left = await take_ids(amqp_urls, retry_queue_name(QUEUE, 0), waiting, within=30)
    assert left == waiting
    assert await take_ids(amqp_urls, dead_letter_queue_name(QUEUE), parked, within=30) == parked
    return SmokeOutcome(len(publisher.sent), leader, publisher.failed_batches, recovered_in)
