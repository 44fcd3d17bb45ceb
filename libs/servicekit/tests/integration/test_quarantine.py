"""Poison outbox rows (issue 15): set aside with their reason, never blocking or duplicating."""

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime

import aio_pika
import pytest
from sqlalchemy import func, select, update

from contracts import EXCHANGE_NAME, UserDeleted
from servicekit import quarantine
from servicekit._bus import Bus
from servicekit._db import SessionMaker
from servicekit._outbox import OutboxPublishFailed, OutboxRelay, add_event
from servicekit._tables import OutboxMessage, QuarantinedEvent
from servicekit.testing import collecting_queue, eventually

from .helpers import deleted, outbox_size

pytestmark = pytest.mark.integration

#: AMQP header tables hold integers of at most 64 bits: this one can never be encoded.
UNENCODABLE_HEADERS = {"x-count": 2**70}


async def add_events(session_maker: SessionMaker, count: int, first: int = 0) -> list[str]:
    async with session_maker() as session, session.begin():
        return [
            str((await add_event(session, deleted(first + n), producer="test")).event_id)
            for n in range(count)
        ]


async def spoil(session_maker: SessionMaker, event_id: str, **values: object) -> None:
    async with session_maker() as session, session.begin():
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.event_id == uuid.UUID(event_id))  # type: ignore[arg-type]
            .values(**values)
        )


async def quarantined(session_maker: SessionMaker) -> dict[str, str]:
    async with session_maker() as session:
        rows = (await session.execute(select(QuarantinedEvent))).scalars().all()
    return {str(row.event_id): row.reason for row in rows}


async def test_unencodable_and_oversized_rows_are_quarantined_and_the_rest_published_once(
    session_maker: SessionMaker, amqp_url: str
) -> None:
    connection, received = await collecting_queue(amqp_url, "recipe.#")
    ids = await add_events(session_maker, 10)
    await spoil(session_maker, ids[2], headers=UNENCODABLE_HEADERS)
    await spoil(session_maker, ids[5], envelope={"not": "an envelope"})
    async with session_maker() as session, session.begin():
        big = await add_event(
            session,
            UserDeleted(user_id=1, username="x" * 5000, version=1, deleted_at=datetime.now(UTC)),
            producer="test",
        )
    bus = Bus(amqp_url, max_message_bytes=4096)
    await bus.connect()
    relay = OutboxRelay(session_maker, bus, listen_url=None, batch_size=4)

    assert await relay.drain() == 8
    assert await relay.drain() == 0, "nothing is left to publish again"

    reasons = await quarantined(session_maker)
    assert set(reasons) == {ids[2], ids[5], str(big.event_id)}
    assert "cannot encode" in reasons[ids[2]]
    assert "invalid envelope" in reasons[ids[5]]
    assert "more than the 4096 allowed" in reasons[str(big.event_id)]
    assert await outbox_size(session_maker) == 0
    good = [event_id for n, event_id in enumerate(ids) if n not in (2, 5)]

    async def all_arrived() -> bool:
        return len(received) >= len(good)

    await eventually(all_arrived)
    assert Counter(received) == Counter(good), "each published once, poison never"
    await bus.close()
    await connection.close()


async def test_a_client_request_id_too_long_for_amqp_still_publishes(
    session_maker: SessionMaker, amqp_url: str
) -> None:
    """The row of issue 15: 200 x 'é' as correlation id (400 bytes in UTF-8, AMQP allows 255)."""
    connection, received = await collecting_queue(amqp_url, "recipe.#")
    ids = await add_events(session_maker, 3)
    async with session_maker() as session:
        row = await session.get(OutboxMessage, uuid.UUID(ids[1]))
        assert row is not None
        envelope = {**row.envelope, "correlation_id": "é" * 200}
    await spoil(session_maker, ids[1], envelope=envelope)
    bus = Bus(amqp_url)
    await bus.connect()

    assert await OutboxRelay(session_maker, bus, listen_url=None).drain() == 3

    async def all_arrived() -> bool:
        return sorted(received) == sorted(ids)

    await eventually(all_arrived)
    await bus.close()
    await connection.close()


async def test_a_broker_refusal_keeps_the_row_then_quarantines_it_and_confirmed_rows_go(
    session_maker: SessionMaker, amqp_url: str
) -> None:
    """A queue that refuses every message (``reject-publish`` at length 0) nacks one event type."""
    connection, received = await collecting_queue(amqp_url, "recipe.#")
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        EXCHANGE_NAME, aio_pika.ExchangeType.TOPIC, durable=True
    )
    refusing = await channel.declare_queue(
        "test.refusing", arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
    )
    await refusing.bind(exchange, "user.deleted")
    ids = await add_events(session_maker, 3)
    async with session_maker() as session, session.begin():
        refused = await add_event(
            session,
            UserDeleted(user_id=1, username="u", version=1, deleted_at=datetime.now(UTC)),
            producer="test",
        )
    more = await add_events(session_maker, 2, first=10)
    bus = Bus(amqp_url)
    await bus.connect()
    relay = OutboxRelay(
        session_maker, bus, listen_url=None, batch_size=10, refusals_before_quarantine=2
    )

    with pytest.raises(OutboxPublishFailed, match="refused by the broker"):
        await relay.drain()
    assert await outbox_size(session_maker) == 1, "confirmed rows were deleted all the same"
    assert await quarantined(session_maker) == {}

    assert await relay.drain() == 0
    assert await outbox_size(session_maker) == 0
    assert "refused" in (await quarantined(session_maker))[str(refused.event_id)]

    async def all_arrived() -> bool:
        return len(received) >= len(ids) + len(more)

    await eventually(all_arrived)
    assert Counter(received) == Counter(ids + more), "the confirmed rows were never re-sent"
    assert bus.is_connected, "the publisher recovered on a fresh channel"
    await bus.close()
    await connection.close()


async def test_the_cli_lists_shows_and_releases_quarantined_rows(
    session_maker: SessionMaker,
    clean_database: str,
    amqp_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    connection, received = await collecting_queue(amqp_url, "recipe.#")
    ids = await add_events(session_maker, 2)
    good_headers: dict[str, int] = {}
    await spoil(session_maker, ids[0], headers=UNENCODABLE_HEADERS)
    bus = Bus(amqp_url)
    await bus.connect()
    relay = OutboxRelay(session_maker, bus, listen_url=None)
    assert await relay.drain() == 1
    monkeypatch.setenv("DATABASE_URL", clean_database)

    await _cli(["list"])
    assert capsys.readouterr().out.strip() == "outbox_quarantine: 1"
    await _cli(["show"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["event_id"] == ids[0] and "cannot encode" in shown["reason"]

    # The cause is fixed (here: the header), then the row is released to its old place.
    async with session_maker() as session, session.begin():
        await session.execute(
            update(QuarantinedEvent)
            .where(QuarantinedEvent.event_id == uuid.UUID(ids[0]))  # type: ignore[arg-type]
            .values(headers=good_headers)
        )
    await _cli(["release", ids[0]])
    assert capsys.readouterr().out.strip() == "released 1"
    assert await relay.drain() == 1

    async def both_arrived() -> bool:
        return sorted(received) == sorted(ids)

    await eventually(both_arrived)
    async with session_maker() as session:
        assert await session.scalar(select(func.count()).select_from(QuarantinedEvent)) == 0
    await bus.close()
    await connection.close()


async def _cli(argv: list[str]) -> None:
    """``outbox-quarantine`` as a command runs it, off the test's event loop."""
    assert await asyncio.to_thread(quarantine.main, argv) == 0
