"""``deliver``: an event through a consumer's real handlers and inbox, without a broker."""

import uuid

import pytest
from sqlalchemy import select

from contracts import RecipeDeleted
from servicekit._consumer import Consumer, EventContext
from servicekit._db import SessionMaker
from servicekit._tables import InboxMessage
from servicekit.testing import deliver

from .helpers import deleted, effects, record_effect

pytestmark = pytest.mark.integration

QUEUE = "t.delivered"


async def inbox_rows(session_maker: SessionMaker) -> list[tuple[str, uuid.UUID]]:
    columns = InboxMessage.__table__.c  # type: ignore[attr-defined]
    async with session_maker() as session:
        rows = await session.execute(select(columns.consumer, columns.event_id))
        return [(row.consumer, row.event_id) for row in rows]


def consumer_of(session_maker: SessionMaker) -> Consumer:
    consumer = Consumer(queue=QUEUE, producer="t", session_maker=session_maker)
    consumer.on(RecipeDeleted, record_effect)
    return consumer


async def test_an_event_is_applied_once_with_its_inbox_row(session_maker: SessionMaker) -> None:
    event_id = uuid.uuid4()
    assert await deliver(consumer_of(session_maker), deleted(7), event_id=event_id)
    assert await effects(session_maker) == ["7"]
    assert await inbox_rows(session_maker) == [(QUEUE, event_id)]


async def test_the_same_event_again_is_a_duplicate_and_changes_nothing(
    session_maker: SessionMaker,
) -> None:
    consumer = consumer_of(session_maker)
    event_id = uuid.uuid4()
    assert await deliver(consumer, deleted(7), event_id=event_id)
    assert not await deliver(consumer, deleted(7), event_id=event_id)
    assert await effects(session_maker) == ["7"]


async def test_a_failing_handler_rolls_back_its_effects_and_the_inbox_row(
    session_maker: SessionMaker,
) -> None:
    async def record_then_fail(ctx: EventContext, event: RecipeDeleted) -> None:
        await record_effect(ctx, event)
        raise RuntimeError("handler failed")

    failing = Consumer(queue=QUEUE, producer="t", session_maker=session_maker)
    failing.on(RecipeDeleted, record_then_fail)
    event_id = uuid.uuid4()
    with pytest.raises(RuntimeError, match="handler failed"):
        await deliver(failing, deleted(7), event_id=event_id)
    assert await effects(session_maker) == []
    assert await inbox_rows(session_maker) == []
    # Not claimed: the retry of the same event is applied.
    assert await deliver(consumer_of(session_maker), deleted(7), event_id=event_id)
    assert await effects(session_maker) == ["7"]
