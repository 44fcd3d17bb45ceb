import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from contracts import Envelope, ScheduleTick, parse_event
from servicekit._db import SessionMaker
from servicekit._tables import OutboxMessage
from servicekit._ticks import TickEmitter

pytestmark = pytest.mark.integration

MONDAY_SIX = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def emitter(session_maker: SessionMaker, grace: timedelta = timedelta(hours=2)) -> TickEmitter:
    return TickEmitter(session_maker, job="digest", cron="0 6 * * 1-5", producer="t", grace=grace)


async def outbox_ticks(session_maker: SessionMaker) -> list[ScheduleTick]:
    async with session_maker() as session:
        rows = (await session.scalars(select(OutboxMessage))).all()
    ticks = [parse_event(Envelope.model_validate(row.envelope)) for row in rows]
    return [tick for tick in ticks if isinstance(tick, ScheduleTick)]


async def test_two_emitters_for_one_slot_produce_one_tick(session_maker: SessionMaker) -> None:
    now = MONDAY_SIX + timedelta(seconds=3)
    results = await asyncio.gather(
        emitter(session_maker).emit_due(now), emitter(session_maker).emit_due(now)
    )
    assert sum(result is not None for result in results) == 1
    assert await outbox_ticks(session_maker) == [
        ScheduleTick(job="digest", slot=MONDAY_SIX, cron="0 6 * * 1-5")
    ]
    assert await emitter(session_maker).emit_due(now + timedelta(minutes=1)) is None


async def test_missed_slot_is_caught_up_inside_the_grace_window(
    session_maker: SessionMaker,
) -> None:
    assert await emitter(session_maker).emit_due(MONDAY_SIX + timedelta(minutes=90))
    assert await emitter(session_maker).emit_due(MONDAY_SIX + timedelta(days=1, hours=3)) is None
    assert [t.slot for t in await outbox_ticks(session_maker)] == [MONDAY_SIX]
