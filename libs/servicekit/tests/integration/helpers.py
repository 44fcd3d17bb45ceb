import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aio_pika
from sqlalchemy import func, select, text

from contracts import EXCHANGE_NAME, RecipeDeleted
from servicekit.consumer import EventContext
from servicekit.db import SessionMaker
from servicekit.tables import OutboxMessage


def deleted(recipe_id: int) -> RecipeDeleted:
    return RecipeDeleted(recipe_id=recipe_id, seller_id=1, deleted_at=datetime.now(UTC))


async def record_effect(ctx: EventContext, event: RecipeDeleted) -> None:
    """A handler whose effect is one row per application, so duplicates would show."""
    await ctx.session.execute(
        text("INSERT INTO applied_effects (event_id, note) VALUES (:e, :n)"),
        {"e": ctx.envelope.event_id, "n": str(event.recipe_id)},
    )


async def effects(session_maker: SessionMaker) -> list[str]:
    async with session_maker() as session:
        rows = await session.execute(text("SELECT note FROM applied_effects ORDER BY id"))
        return [row[0] for row in rows]


async def outbox_size(session_maker: SessionMaker) -> int:
    async with session_maker() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float = 20.0, interval: float = 0.05
) -> None:
    """Wait until ``check`` holds; fail with a clear message if it never does."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within}s")


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
