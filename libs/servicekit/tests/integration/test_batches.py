"""A consumer with ``batch_size`` > 1: one transaction for the messages already delivered."""

import asyncio
import logging

import aio_pika
import pytest
from sqlalchemy import text

from contracts import RecipeDeleted, make_envelope
from servicekit import dead_letters
from servicekit._bus import Bus, RetryPolicy
from servicekit._consumer import Consumer, EventContext
from servicekit._db import SessionMaker
from servicekit._runtime import declare_queues
from servicekit.testing import TcpProxy, eventually, metric_value

from .helpers import deleted, effects, record_effect

pytestmark = pytest.mark.integration

FAST = RetryPolicy(delays=(0.05, 0.1))
COUNT = 12


class TransactionRecorder:
    """A handler recording each event's effect and the transaction that applied it.

    The first event it sees is held a moment, so that the others are all delivered and waiting
    when its batch of one finishes: they then make up the next batch.
    """

    def __init__(self, *, failing: int | None = None) -> None:
        self.transactions: dict[int, int] = {}
        self._failing = failing
        self._held_first = False

    async def __call__(self, ctx: EventContext, event: RecipeDeleted) -> None:
        if not self._held_first:
            self._held_first = True
            await asyncio.sleep(0.5)
        await record_effect(ctx, event)
        if event.recipe_id == self._failing:
            raise RuntimeError(f"recipe {event.recipe_id} cannot be applied")
        transaction = await ctx.session.scalar(text("SELECT txid_current()"))
        self.transactions[event.recipe_id] = int(transaction or 0)


async def fill_queue(amqp_url: str, management_url: str, consumer: Consumer) -> None:
    """Declare ``consumer``'s queues and put COUNT events in, before it starts."""
    await declare_queues(amqp_url, [consumer], management_url=management_url)
    publisher = Bus(amqp_url)
    await publisher.connect()
    await publisher.publish_many(
        [(make_envelope(deleted(i), producer="test"), {}) for i in range(COUNT)]
    )
    await publisher.close()


async def queued_consumer(
    amqp_url: str,
    management_url: str,
    session_maker: SessionMaker,
    queue: str,
    handler: TransactionRecorder,
) -> Consumer:
    """A batching consumer whose queue already holds COUNT events when it starts."""
    consumer = Consumer(
        queue=queue,
        producer="t",
        session_maker=session_maker,
        retry_policy=FAST,
        prefetch=COUNT,
        batch_size=COUNT,
    )
    consumer.on(RecipeDeleted, handler)
    await fill_queue(amqp_url, management_url, consumer)
    return consumer


async def test_messages_waiting_together_commit_in_one_transaction(
    session_maker: SessionMaker, amqp_url: str, management_url: str
) -> None:
    recorder = TransactionRecorder()
    consumer = await queued_consumer(amqp_url, management_url, session_maker, "t.batch", recorder)
    bus = Bus(amqp_url)
    await bus.connect()
    await consumer.start(bus)

    async def all_applied() -> bool:
        return len(await effects(session_maker)) == COUNT

    await eventually(all_applied)
    await consumer.stop()
    await bus.close()
    assert sorted(await effects(session_maker), key=int) == [str(i) for i in range(COUNT)]
    first, *rest = recorder.transactions.values()
    assert len(set(rest)) == 1, "the events waiting behind the first share one transaction"
    assert first not in rest


async def test_a_poison_message_in_a_batch_is_dead_lettered_and_the_others_commit(
    session_maker: SessionMaker,
    amqp_url: str,
    management_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    poison = COUNT // 2
    recorder = TransactionRecorder(failing=poison)
    consumer = await queued_consumer(
        amqp_url, management_url, session_maker, "t.batch_poison", recorder
    )
    bus = Bus(amqp_url)
    await bus.connect()
    caplog.set_level(logging.INFO, logger="servicekit._consumer")
    await consumer.start(bus)

    async def parked() -> bool:
        return await dead_letters.count(amqp_url, "t.batch_poison") == 1

    await eventually(parked)
    await consumer.stop()
    await bus.close()
    assert any("applying its events one at a time" in r.getMessage() for r in caplog.records)
    applied = sorted(await effects(session_maker), key=int)
    assert applied == [str(i) for i in range(COUNT) if i != poison], "each good event once"
    [letter] = await dead_letters.peek(amqp_url, "t.batch_poison")
    assert f"recipe {poison} cannot be applied" in letter.reason


async def test_a_batch_redelivered_after_its_commit_is_a_no_op(
    session_maker: SessionMaker, amqp_url: str, management_url: str, amqp_proxy: TcpProxy
) -> None:
    """The batch commits, then the connection dies before its acks: the broker redelivers."""
    recorder = TransactionRecorder()
    cut = asyncio.Event()

    async def cut_before_the_acks(ctx: EventContext, event: RecipeDeleted) -> None:
        await recorder(ctx, event)
        if event.recipe_id == COUNT - 1 and not cut.is_set():
            cut.set()
            await amqp_proxy.cut()

    consumer = await queued_consumer(
        amqp_url, management_url, session_maker, "t.batch_crash", recorder
    )
    consumer.on(RecipeDeleted, cut_before_the_acks)
    duplicates = {"queue": "t.batch_crash", "event_type": "recipe.deleted", "outcome": "duplicate"}
    before = metric_value("events_consumed_total", **duplicates)
    bus = Bus(amqp_proxy.url_for(amqp_url))
    await bus.connect()
    await consumer.start(bus)
    await eventually(lambda: _is_set(cut))
    await asyncio.sleep(0.3)
    amqp_proxy.restore()

    async def batch_redelivered() -> bool:
        return bool(metric_value("events_consumed_total", **duplicates) >= before + COUNT - 1)

    await eventually(batch_redelivered, within=30)
    await consumer.stop()
    await bus.close()
    assert sorted(await effects(session_maker), key=int) == [str(i) for i in range(COUNT)]


async def _is_set(event: asyncio.Event) -> bool:
    return event.is_set()


async def queued_messages(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def test_a_committed_batch_is_acked_at_once_and_leaves_nothing_queued(
    session_maker: SessionMaker, amqp_url: str, management_url: str
) -> None:
    consumer = await queued_consumer(
        amqp_url, management_url, session_maker, "t.batch_acks", TransactionRecorder()
    )
    bus = Bus(amqp_url)
    await bus.connect()
    await consumer.start(bus)

    async def all_applied() -> bool:
        return len(await effects(session_maker)) == COUNT

    await eventually(all_applied)
    await eventually(lambda: _holds(consumer.acks.unsettled == 0))
    await consumer.stop()  # closing the channel would requeue any message left unacked
    await bus.close()
    assert consumer.acks.multiple_acks == 1
    assert consumer.acks.messages_acked_together == COUNT - 1
    assert await queued_messages(amqp_url, "t.batch_acks") == 0


async def test_a_later_batch_committing_first_never_acks_an_earlier_uncommitted_message(
    session_maker: SessionMaker, amqp_url: str, management_url: str, amqp_proxy: TcpProxy
) -> None:
    """The first message is held while later batches commit; then its transaction is lost.

    Had a later batch's ack covered the first message's delivery tag, the broker would not
    redeliver it and its effect would never happen.
    """
    first_attempt = True

    async def hold_the_first_until_the_others_commit(
        ctx: EventContext, event: RecipeDeleted
    ) -> None:
        nonlocal first_attempt
        await record_effect(ctx, event)
        if event.recipe_id == 0 and first_attempt:
            first_attempt = False
            await eventually(lambda: _holds(consumer.acks.unsettled == 1))
            await amqp_proxy.cut()
            raise RuntimeError("crashed before commit")

    consumer = Consumer(
        queue="t.batch_order",
        producer="t",
        session_maker=session_maker,
        retry_policy=FAST,
        prefetch=COUNT,
        batch_size=COUNT // 3,
    )
    consumer.on(RecipeDeleted, hold_the_first_until_the_others_commit)
    await fill_queue(amqp_url, management_url, consumer)
    bus = Bus(amqp_proxy.url_for(amqp_url))
    await bus.connect()
    await consumer.start(bus)
    await eventually(lambda: _holds(not first_attempt))
    await asyncio.sleep(0.3)
    amqp_proxy.restore()

    async def first_applied() -> bool:
        return "0" in await effects(session_maker)

    await eventually(first_applied, within=30)
    await consumer.stop()
    await bus.close()
    assert sorted(await effects(session_maker), key=int) == [str(i) for i in range(COUNT)]


async def _holds(condition: bool) -> bool:
    return condition
