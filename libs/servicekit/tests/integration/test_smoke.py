import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from contracts import RecipeDeleted
from servicekit.bus import Bus, RetryPolicy
from servicekit.consumer import Consumer, EventContext
from servicekit.db import SessionMaker
from servicekit.outbox import OutboxRelay, add_event

pytestmark = pytest.mark.integration


async def test_outbox_to_consumer(session_maker: SessionMaker, amqp_url: str) -> None:
    seen: list[int] = []

    async def on_deleted(ctx: EventContext, event: RecipeDeleted) -> None:
        await ctx.session.execute(
            text("INSERT INTO applied_effects (event_id, note) VALUES (:e, 'x')"),
            {"e": ctx.envelope.event_id},
        )
        seen.append(event.recipe_id)

    bus = Bus(amqp_url)
    await bus.connect()
    consumer = Consumer(
        queue="t.events",
        producer="t",
        session_maker=session_maker,
        retry_policy=RetryPolicy(delays=(0.1,)),
    )
    consumer.on(RecipeDeleted, on_deleted)
    await consumer.start(bus)
    async with session_maker() as s, s.begin():
        await add_event(
            s, RecipeDeleted(recipe_id=7, seller_id=1, deleted_at=datetime.now(UTC)), producer="t"
        )
    relay = OutboxRelay(session_maker, bus, listen_url=None)
    assert await relay.drain() == 1
    for _ in range(50):
        if seen:
            break
        await asyncio.sleep(0.1)
    assert seen == [7]
    await consumer.stop()
    await bus.close()
