import asyncio
import socket
from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from servicekit._db import create_engine, libpq_url
from servicekit._migrations import ensure_database

pytestmark = pytest.mark.integration


@pytest.fixture
async def one_connection_engine(clean_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(clean_database, pool_size=1, pool_timeout=2.0)
    yield engine
    await engine.dispose()


async def _backend_pid(conn: AsyncConnection) -> int:
    return int(await conn.scalar(text("SELECT pg_backend_pid()")) or 0)


async def _open(engine: AsyncEngine) -> AsyncConnection:
    return await engine.connect()


async def test_waiting_checkouts_are_served_in_arrival_order(
    one_connection_engine: AsyncEngine,
) -> None:
    served: list[str] = []

    async def checkout(name: str) -> None:
        async with one_connection_engine.connect():
            served.append(name)

    holder = await one_connection_engine.connect()
    waiters = []
    for name in ("first", "second", "third"):
        waiters.append(asyncio.create_task(checkout(name)))
        await asyncio.sleep(0.01)  # each one waiting before the next arrives
    # Returning the connection and asking again at once must not jump the queue.
    await holder.close()
    async with one_connection_engine.connect():
        served.append("returned and asked again")
    await asyncio.gather(*waiters)

    assert served == ["first", "second", "third", "returned and asked again"]


async def test_checkout_gives_up_after_the_pool_timeout(clean_database: str) -> None:
    engine = create_engine(clean_database, pool_size=1, pool_timeout=0.1)
    try:
        holder = await engine.connect()
        with pytest.raises(PoolTimeout):
            await engine.connect()
        await holder.close()
        async with engine.connect() as conn:  # the timed-out waiter left nothing behind
            assert await conn.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()


async def test_connection_handed_to_a_cancelled_waiter_goes_to_the_next(
    one_connection_engine: AsyncEngine,
) -> None:
    holder = await one_connection_engine.connect()
    cancelled = asyncio.create_task(_open(one_connection_engine))
    await asyncio.sleep(0.01)
    await holder.close()  # hands the connection to the waiting task...
    cancelled.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await cancelled

    async with asyncio.timeout(1.0), one_connection_engine.connect() as conn:
        assert await conn.scalar(text("SELECT 1")) == 1


async def test_connection_killed_by_the_server_fails_once_then_is_replaced(
    one_connection_engine: AsyncEngine, clean_database: str
) -> None:
    async with one_connection_engine.connect() as conn:
        killed_pid = await _backend_pid(conn)
    async with await psycopg.AsyncConnection.connect(
        libpq_url(clean_database), autocommit=True
    ) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (killed_pid,))

    # No pre-ping: the dead connection's first statement fails, as a disconnect (a 503 in an API).
    with pytest.raises(OperationalError) as failure:
        async with one_connection_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    assert failure.value.connection_invalidated

    async with one_connection_engine.connect() as conn:
        assert await _backend_pid(conn) != killed_pid


def test_migrate_says_in_one_line_that_postgresql_cannot_be_reached() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(SystemExit) as exited:
        ensure_database(f"postgresql+psycopg://postgres@127.0.0.1:{port}/nowhere")

    message = str(exited.value.code)
    assert message.startswith("migrate: cannot reach PostgreSQL: connection failed")
    assert "\n" not in message
    assert exited.value.__suppress_context__
