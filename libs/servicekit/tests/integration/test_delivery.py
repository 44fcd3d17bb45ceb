"""The reliability promises of issue 2, each against the real broker and database."""

import asyncio
import itertools
import time
from collections import Counter

import aio_pika
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import RecipeDeleted, make_envelope
from servicekit import dead_letters
from servicekit._bus import Bus, RetryPolicy
from servicekit._consumer import Consumer, EventContext
from servicekit._db import SessionMaker
from servicekit._health import Readiness
from servicekit._outbox import OutboxRelay, add_event
from servicekit._runtime import Messaging, declare_queues
from servicekit.testing import (
    TcpProxy,
    Vhost,
    VhostAdmin,
    collecting_queue,
    eventually,
    metric_value,
)

from .helpers import deleted, effects, outbox_size, record_effect

pytestmark = pytest.mark.integration

FAST = RetryPolicy(delays=(0.05, 0.1))


async def test_event_committed_while_broker_unreachable_arrives_later(
    session_maker: SessionMaker, clean_database: str, amqp_url: str, amqp_proxy: TcpProxy
) -> None:
    connection, received = await collecting_queue(amqp_url)
    await amqp_proxy.cut()
    messaging = Messaging(
        amqp_url=amqp_proxy.url_for(amqp_url),
        database_url=clean_database,
        session_maker=session_maker,
        poll_interval=0.1,
    )
    await messaging.start()
    async with session_maker() as session, session.begin():
        envelope = await add_event(session, deleted(1), producer="test")
    await asyncio.sleep(1.0)
    assert received == []
    assert await outbox_size(session_maker) == 1

    amqp_proxy.restore()

    async def arrived_and_deleted() -> bool:
        # The relay deletes the row when its commit follows the confirm: the consumer can see
        # the message first.
        return received == [str(envelope.event_id)] and await outbox_size(session_maker) == 0

    try:
        await eventually(arrived_and_deleted)
        await asyncio.sleep(0.3)
        assert received == [str(envelope.event_id)]
    finally:
        await messaging.stop()
        await connection.close()


async def test_duplicate_publish_changes_state_once(
    session_maker: SessionMaker, amqp_url: str
) -> None:
    duplicates = {"queue": "t.events", "event_type": "recipe.deleted", "outcome": "duplicate"}
    before = metric_value("events_consumed_total", **duplicates)
    bus = Bus(amqp_url)
    await bus.connect()
    consumer = Consumer(queue="t.events", producer="t", session_maker=session_maker)
    consumer.on(RecipeDeleted, record_effect)
    await consumer.start(bus)
    envelope = make_envelope(deleted(7), producer="test")
    await bus.publish_many([(envelope, {}), (envelope, {})])
    await bus.publish_many([(envelope, {})])

    async def three_seen() -> bool:
        return bool(metric_value("events_consumed_total", **duplicates) >= before + 2)

    await eventually(three_seen)
    assert await effects(session_maker) == ["7"]
    await consumer.stop()
    await bus.close()


async def test_redelivery_after_a_crash_before_ack_is_a_no_op(
    session_maker: SessionMaker, amqp_url: str, amqp_proxy: TcpProxy
) -> None:
    """The handler's transaction commits, then the connection dies before the ack."""
    cut_once = asyncio.Event()

    async def commit_then_lose_connection(ctx: EventContext, event: RecipeDeleted) -> None:
        await record_effect(ctx, event)
        if not cut_once.is_set():
            cut_once.set()
            await amqp_proxy.cut()  # the ack after commit cannot reach the broker

    duplicates = {"queue": "t.crash", "event_type": "recipe.deleted", "outcome": "duplicate"}
    before = metric_value("events_consumed_total", **duplicates)
    bus = Bus(amqp_proxy.url_for(amqp_url))
    await bus.connect()
    consumer = Consumer(queue="t.crash", producer="t", session_maker=session_maker)
    consumer.on(RecipeDeleted, commit_then_lose_connection)
    await consumer.start(bus)
    publisher = Bus(amqp_url)
    await publisher.connect()
    await publisher.publish_many([(make_envelope(deleted(8), producer="test"), {})])
    await eventually(lambda: _is_set(cut_once))
    await asyncio.sleep(0.3)
    amqp_proxy.restore()

    async def redelivered() -> bool:
        return bool(metric_value("events_consumed_total", **duplicates) > before)

    await eventually(redelivered, within=30)
    assert await effects(session_maker) == ["8"]
    await consumer.stop()
    await bus.close()
    await publisher.close()


async def _is_set(event: asyncio.Event) -> bool:
    return event.is_set()


async def test_failing_handler_retries_with_growing_delay_then_dead_letters(
    session_maker: SessionMaker, amqp_url: str
) -> None:
    attempts: list[float] = []
    healthy = False

    async def flaky(ctx: EventContext, event: RecipeDeleted) -> None:
        attempts.append(time.monotonic())
        if not healthy:
            raise RuntimeError("downstream unavailable")
        await record_effect(ctx, event)

    policy = RetryPolicy(delays=(0.2, 0.6, 1.2))
    bus = Bus(amqp_url)
    await bus.connect()
    consumer = Consumer(
        queue="t.flaky", producer="t", session_maker=session_maker, retry_policy=policy
    )
    consumer.on(RecipeDeleted, flaky)
    await consumer.start(bus)
    await bus.publish_many([(make_envelope(deleted(9), producer="test"), {})])

    async def parked() -> bool:
        return await dead_letters.count(amqp_url, "t.flaky") == 1

    await eventually(parked)
    assert len(attempts) == policy.max_attempts == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    for gap, delay in zip(gaps, policy.delays, strict=True):
        assert gap >= delay * 0.9
    assert gaps[0] < gaps[1] < gaps[2]
    letters = await dead_letters.peek(amqp_url, "t.flaky")
    assert len(letters) == 1 and "downstream unavailable" in letters[0].reason
    assert await effects(session_maker) == []

    healthy = True
    assert await dead_letters.replay(amqp_url, "t.flaky") == 1

    async def applied() -> bool:
        return await effects(session_maker) == ["9"]

    await eventually(applied)
    assert await dead_letters.count(amqp_url, "t.flaky") == 0
    await consumer.stop()
    await bus.close()


async def test_undecodable_message_is_parked_with_reason_and_next_is_served(
    session_maker: SessionMaker, amqp_url: str
) -> None:
    bus = Bus(amqp_url)
    await bus.connect()
    consumer = Consumer(queue="t.poison", producer="t", session_maker=session_maker)
    consumer.on(RecipeDeleted, record_effect)
    await consumer.start(bus)
    await bus.publish_to_queue("t.poison", aio_pika.Message(b"{not json", message_id="bad-1"))
    bad_version = make_envelope(deleted(1), producer="t").model_copy(update={"version": 42})
    await bus.publish_to_queue("t.poison", aio_pika.Message(bad_version.model_dump_json().encode()))
    await bus.publish_many([(make_envelope(deleted(10), producer="test"), {})])

    async def settled() -> bool:
        return await dead_letters.count(amqp_url, "t.poison") == 2 and bool(
            await effects(session_maker)
        )

    await eventually(settled)
    reasons = sorted(letter.reason for letter in await dead_letters.peek(amqp_url, "t.poison"))
    assert all(reason.startswith("undecodable message") for reason in reasons)
    assert any("unknown event recipe.deleted v42" in reason for reason in reasons)
    assert await effects(session_maker) == ["10"]
    await consumer.stop()
    await bus.close()


async def test_consumers_resume_after_the_broker_drops_every_connection(
    session_maker: SessionMaker,
    clean_database: str,
    vhost: Vhost,
    vhost_admin: VhostAdmin,
) -> None:
    consumer = Consumer(
        queue="t.resume", producer="t", session_maker=session_maker, retry_policy=FAST
    )
    consumer.on(RecipeDeleted, record_effect)
    messaging = Messaging(
        amqp_url=vhost.url,
        database_url=clean_database,
        session_maker=session_maker,
        consumers=[consumer],
        poll_interval=0.1,
    )
    await messaging.start()
    await eventually(lambda: _attached(consumer))
    total = 60
    for recipe_id in range(total):
        async with session_maker() as session, session.begin():
            await add_event(session, deleted(recipe_id), producer="test")
        if recipe_id in (15, 35):
            # the management API lists a new connection only after its stats interval
            await eventually(lambda: _closed_some(vhost_admin, vhost.name), within=30, interval=0.5)
        await asyncio.sleep(0.02)

    async def all_applied() -> bool:
        return len(await effects(session_maker)) >= total

    await eventually(all_applied, within=60)
    await asyncio.sleep(0.5)
    applied = await effects(session_maker)
    assert Counter(applied) == Counter(str(i) for i in range(total))
    assert consumer.is_attached
    await messaging.stop()


async def _closed_some(admin: VhostAdmin, vhost: str) -> bool:
    return await asyncio.to_thread(admin.close_connections, vhost) > 0


async def _attached(consumer: Consumer) -> bool:
    return consumer.is_attached


async def test_two_relays_publish_each_event_exactly_once(
    session_maker: SessionMaker, amqp_url: str
) -> None:
    connection, received = await collecting_queue(amqp_url)
    total = 400
    async with session_maker() as session, session.begin():
        ids = [
            str((await add_event(session, deleted(i), producer="test")).event_id)
            for i in range(total)
        ]
    buses = [Bus(amqp_url), Bus(amqp_url)]
    for bus in buses:
        await bus.connect()
    relays = [OutboxRelay(session_maker, bus, listen_url=None, batch_size=25) for bus in buses]
    published = await asyncio.gather(*(relay.drain() for relay in relays))
    assert sum(published) == total
    assert all(count > 0 for count in published), "both relays should have taken a share"

    async def all_received() -> bool:
        return len(received) >= total

    await eventually(all_received)
    await asyncio.sleep(0.3)
    assert sorted(received) == sorted(ids)
    for bus in buses:
        await bus.close()
    await connection.close()


async def test_queues_declared_ahead_keep_events_published_before_the_worker_starts(
    session_maker: SessionMaker, amqp_url: str, management_url: str
) -> None:
    """What ``migrate`` does: a consumer's queue exists before anyone publishes."""
    consumer = Consumer(queue="t.early", producer="t", session_maker=session_maker)
    consumer.on(RecipeDeleted, record_effect)
    await declare_queues(amqp_url, [consumer], management_url=management_url)
    publisher = Bus(amqp_url)
    await publisher.connect()
    await publisher.publish_many([(make_envelope(deleted(11), producer="test"), {})])
    await publisher.close()

    bus = Bus(amqp_url)
    await bus.connect()
    await consumer.start(bus)

    async def applied() -> bool:
        return await effects(session_maker) == ["11"]

    await eventually(applied)
    await consumer.stop()
    await bus.close()


async def test_stopping_a_consumer_finishes_the_message_in_flight(
    session_maker: SessionMaker, amqp_url: str
) -> None:
    started = asyncio.Event()

    async def slow(ctx: EventContext, event: RecipeDeleted) -> None:
        started.set()
        await asyncio.sleep(0.5)
        await record_effect(ctx, event)

    bus = Bus(amqp_url)
    await bus.connect()
    consumer = Consumer(queue="t.graceful", producer="t", session_maker=session_maker)
    consumer.on(RecipeDeleted, slow)
    await consumer.start(bus)
    await bus.publish_many([(make_envelope(deleted(12), producer="test"), {})])
    await eventually(lambda: _is_set(started))

    await consumer.stop()

    assert await effects(session_maker) == ["12"]
    await bus.close()
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue("t.graceful", passive=True)
    assert queue.declaration_result.message_count == 0, "the message was acked before closing"
    await connection.close()


async def test_one_notify_round_trip_per_transaction(
    session_maker: SessionMaker, engine: AsyncEngine
) -> None:
    """PostgreSQL folds equal notifications of a transaction itself; the round trips it costs
    are ours to save, so count the statements sent."""
    notifies: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "pg_notify" in statement:
            notifies.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    async with session_maker() as session:
        async with session.begin():
            for recipe_id in range(3):
                await add_event(session, deleted(recipe_id), producer="test")
        async with session.begin():
            await add_event(session, deleted(3), producer="test")
    event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(notifies) == 2
    assert await outbox_size(session_maker) == 4


async def test_readiness_reports_every_lost_broker_connection(
    session_maker: SessionMaker, engine: AsyncEngine, vhost: Vhost, vhost_admin: VhostAdmin
) -> None:
    """Not only the first drop: after a robust reconnect the next drop must show too.

    The broker refuses the reconnections (permissions revoked) until the test lets them back:
    an outage that lasts until then, rather than one of milliseconds that a probe sees by luck
    (issue 15 saw this test fail on a fresh clone when the reconnect won the race).
    """
    bus = Bus(vhost.url)
    await bus.connect()
    consumer = Consumer(queue="t.ready", producer="t", session_maker=session_maker)
    consumer.on(RecipeDeleted, record_effect)
    await consumer.start(bus)
    readiness = Readiness(engine=engine, bus=bus, consumers=[consumer])

    async def ready() -> bool:
        return (await readiness.report())[0]

    async def broker_down() -> bool:
        ready, checks = await readiness.report()
        return not ready and not checks["broker"]

    for _ in range(2):
        await eventually(ready, within=30)
        await asyncio.to_thread(vhost_admin.revoke_access, vhost.name)
        try:
            await eventually(lambda: _closed_some(vhost_admin, vhost.name), within=30)
            await eventually(broker_down, within=30)
        finally:
            await asyncio.to_thread(vhost_admin.grant_access, vhost.name)
        await eventually(ready, within=30)
    await consumer.stop()
    await bus.close()
