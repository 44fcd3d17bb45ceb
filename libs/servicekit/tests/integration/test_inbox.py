"""The inbox is pruned after its retention, and a redelivery inside it stays a no-op."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, text

from contracts import RecipeDeleted, make_envelope
from servicekit import _inbox as inbox
from servicekit import defaults
from servicekit._bus import Bus
from servicekit._consumer import Consumer
from servicekit._db import SessionMaker
from servicekit._inbox import prune_inbox
from servicekit._settings import ServiceSettings
from servicekit._tables import InboxMessage
from servicekit.testing import eventually, metric_value

from .helpers import deleted, effects, record_effect

pytestmark = pytest.mark.integration

DAY = 24 * 3600.0


async def inbox_ids(session_maker: SessionMaker) -> set[str]:
    async with session_maker() as session:
        return {str(i) for i in await session.scalars(select(InboxMessage.__table__.c.event_id))}  # type: ignore[attr-defined]


async def test_rows_older_than_the_retention_are_pruned_in_batches(
    session_maker: SessionMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox, "PRUNE_BATCH", 7)  # several batches, one partial
    now = datetime.now(UTC)
    async with session_maker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO inbox_messages (consumer, event_id, event_type, handled_at)"
                " SELECT 'q', gen_random_uuid(), 'recipe.deleted', :at FROM generate_series(1, :n)"
            ),
            [{"at": now - timedelta(days=8), "n": 20}, {"at": now - timedelta(days=6), "n": 5}],
        )

    assert await prune_inbox(session_maker, retention=7 * DAY, now=now) == 20
    async with session_maker() as session:
        assert await session.scalar(select(func.count()).select_from(InboxMessage)) == 5


async def test_a_redelivery_within_the_retention_is_still_a_no_op_after_pruning(
    session_maker: SessionMaker, amqp_url: str
) -> None:
    duplicates = {"queue": "t.pruned", "event_type": "recipe.deleted", "outcome": "duplicate"}
    before = metric_value("events_consumed_total", **duplicates)
    bus = Bus(amqp_url)
    await bus.connect()
    consumer = Consumer(queue="t.pruned", producer="t", session_maker=session_maker)
    consumer.on(RecipeDeleted, record_effect)
    await consumer.start(bus)
    envelope = make_envelope(deleted(3), producer="test")
    await bus.publish_many([(envelope, {})])

    async def applied() -> bool:
        return await effects(session_maker) == ["3"]

    await eventually(applied)
    assert await prune_inbox(session_maker, retention=defaults.DEFAULT_INBOX_RETENTION) == 0
    assert str(envelope.event_id) in await inbox_ids(session_maker)
    await bus.publish_many([(envelope, {})])

    async def seen_again() -> bool:
        return bool(metric_value("events_consumed_total", **duplicates) > before)

    await eventually(seen_again)
    assert await effects(session_maker) == ["3"]
    await consumer.stop()
    await bus.close()


def test_the_retention_must_outlive_every_redelivery() -> None:
    url = "postgresql+psycopg://x/y"
    assert ServiceSettings(database_url=url, health_port=1).inbox_retention == 7 * DAY
    with pytest.raises(ValidationError):
        ServiceSettings(database_url=url, health_port=1, inbox_retention=3600)
    with pytest.raises(ValidationError, match="longer than the sum of retry_delays"):
        ServiceSettings(
            database_url=url, health_port=1, inbox_retention=DAY, retry_delays=(DAY, 60.0)
        )
