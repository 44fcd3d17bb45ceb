from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit._db import SessionMaker, libpq_url
from servicekit._outbox import NOTIFY_CHANNEL, add_event

from .helpers import deleted, outbox_size

pytestmark = pytest.mark.integration


@pytest.fixture
async def listener(clean_database: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(
        libpq_url(clean_database), autocommit=True
    ) as conn:
        await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        yield conn


async def _notifications(conn: psycopg.AsyncConnection[Any]) -> int:
    """How many notifications arrive within a short while."""
    count = 0
    async for _ in conn.notifies(timeout=0.3):
        count += 1
    return count


def _count_statements(engine: AsyncEngine) -> list[str]:
    statements: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def record(*args: Any) -> None:
        statements.append(args[2])

    return statements


async def test_one_event_is_one_statement_and_one_notification(
    engine: AsyncEngine, session_maker: SessionMaker, listener: psycopg.AsyncConnection[Any]
) -> None:
    statements = _count_statements(engine)
    async with session_maker() as session, session.begin():
        await add_event(session, deleted(1), producer="test")
        assert len(statements) == 1  # the row and its NOTIFY together, before the commit

    assert await outbox_size(session_maker) == 1
    assert await _notifications(listener) == 1


async def test_a_transaction_of_many_events_notifies_once(
    engine: AsyncEngine, session_maker: SessionMaker, listener: psycopg.AsyncConnection[Any]
) -> None:
    statements = _count_statements(engine)
    async with session_maker() as session, session.begin():
        for recipe_id in range(5):
            await add_event(session, deleted(recipe_id), producer="test")
    # The first row with the NOTIFY, the four others in one flush.
    assert len(statements) == 2
    assert sum("pg_notify" in statement for statement in statements) == 1

    assert await outbox_size(session_maker) == 5
    assert await _notifications(listener) == 1


async def test_events_in_a_transaction_begun_by_the_session_notify_once(
    engine: AsyncEngine, session_maker: SessionMaker, listener: psycopg.AsyncConnection[Any]
) -> None:
    statements = _count_statements(engine)
    async with session_maker() as session:
        await add_event(session, deleted(1), producer="test")  # begins the transaction
        await add_event(session, deleted(2), producer="test")
        await session.commit()
    assert len(statements) == 2
    assert sum("pg_notify" in statement for statement in statements) == 1

    assert await outbox_size(session_maker) == 2
    assert await _notifications(listener) == 1


async def test_a_rolled_back_event_leaves_no_row_and_no_notification(
    session_maker: SessionMaker, listener: psycopg.AsyncConnection[Any]
) -> None:
    async with session_maker() as session:
        async with session.begin():
            await add_event(session, deleted(1), producer="test")
            await session.rollback()
        async with session.begin():  # a new transaction notifies again
            await add_event(session, deleted(2), producer="test")

    assert await outbox_size(session_maker) == 1
    assert await _notifications(listener) == 1


async def test_separate_transactions_notify_each(
    session_maker: SessionMaker, listener: psycopg.AsyncConnection[Any]
) -> None:
    for recipe_id in range(3):
        async with session_maker() as session, session.begin():
            await add_event(session, deleted(recipe_id), producer="test")

    assert await _notifications(listener) == 3
