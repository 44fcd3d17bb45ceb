"""Background tasks fail loudly; readiness and the pool keep their promises (issue 15)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from contracts import RecipeDeleted
from servicekit._consumer import Consumer
from servicekit._db import FairAsyncQueuePool, SessionMaker, create_engine, libpq_url
from servicekit._health import Readiness, health_app
from servicekit._health import router as health_router
from servicekit._runtime import BackgroundTaskEnded, Messaging, api_lifespan, run_worker
from servicekit._settings import ServiceSettings
from servicekit.testing import TcpProxy, eventually

from .helpers import record_effect

pytestmark = pytest.mark.integration


async def test_a_worker_whose_consumer_cannot_start_exits_non_zero(
    session_maker: SessionMaker,
    clean_database: str,
    amqp_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker connects, then the consumer's queue cannot be declared (issue 15).

    An exclusive queue of another connection under the consumer's name refuses every other
    connection (RESOURCE_LOCKED); a queue that merely has other arguments would not do, since
    the topology then uses it as it is until ``migrate`` rebuilds it.
    """
    holder = await aio_pika.connect(amqp_url)
    channel = await holder.channel()
    await channel.declare_queue("t.dies", exclusive=True)
    consumer = Consumer(queue="t.dies", producer="t", session_maker=session_maker)
    consumer.on(RecipeDeleted, record_effect)
    messaging = Messaging(
        amqp_url=amqp_url,
        database_url=clean_database,
        session_maker=session_maker,
        consumers=[consumer],
    )
    readiness = Readiness(bus=messaging.bus, consumers=[consumer])

    try:
        with pytest.raises(BackgroundTaskEnded, match="messaging"):
            await asyncio.wait_for(run_worker(messaging, readiness, host="127.0.0.1", port=0), 60)
    finally:
        await holder.close()

    assert "RESOURCE_LOCKED" in messaging.liveness.ended["messaging"]
    assert any(
        r.levelname == "CRITICAL" and "background task messaging ended" in r.getMessage()
        for r in caplog.records
    )


async def connected(messaging: Messaging) -> bool:
    return messaging.bus.is_connected


async def test_liveness_turns_red_when_a_background_task_ends(
    session_maker: SessionMaker, clean_database: str, amqp_url: str
) -> None:
    async def dispatcher_that_crashes() -> None:
        raise RuntimeError("lost the mail queue")

    messaging = Messaging(
        amqp_url=amqp_url, database_url=clean_database, session_maker=session_maker
    )
    await messaging.start()
    await eventually(lambda: connected(messaging))
    app = health_app(Readiness(liveness=messaging.liveness))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        assert (await client.get("/healthz")).status_code == 200
        messaging.spawn(dispatcher_that_crashes(), name="mail-dispatch")

        async def dead() -> bool:
            return (await client.get("/healthz")).status_code == 503

        await eventually(dead)
        body = (await client.get("/healthz")).json()
        assert body["ended"] == {"mail-dispatch": "RuntimeError: lost the mail queue"}
        assert (await client.get("/readyz")).json()["checks"]["tasks"] == {"mail-dispatch": False}
    await messaging.stop()


async def test_a_task_that_is_done_by_design_is_not_a_death(
    session_maker: SessionMaker, clean_database: str, amqp_url: str
) -> None:
    async def restore_gauges() -> None:
        return None

    messaging = Messaging(
        amqp_url=amqp_url, database_url=clean_database, session_maker=session_maker
    )
    await messaging.start()
    await eventually(lambda: connected(messaging))
    task = messaging.spawn(restore_gauges(), name="restore", forever=False)
    await task
    await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    assert messaging.liveness.alive
    await messaging.stop()
    assert messaging.liveness.alive, "tasks cancelled by stop() are no death either"


@asynccontextmanager
async def api(settings: ServiceSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = FastAPI(lifespan=api_lifespan(settings))
    app.include_router(health_router)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client,
    ):
        yield app, client


async def test_an_api_stays_ready_while_the_broker_is_away_and_its_outbox_waits(
    clean_database: str, amqp_url: str, amqp_proxy: TcpProxy
) -> None:
    await amqp_proxy.cut()
    settings = ServiceSettings(
        database_url=clean_database, amqp_url=amqp_proxy.url_for(amqp_url), health_port=0
    )
    async with api(settings) as (_, client):
        response = await client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["checks"] == {"database": True}


async def test_an_api_is_not_ready_without_its_database(amqp_url: str) -> None:
    settings = ServiceSettings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        amqp_url=amqp_url,
        health_port=0,
    )
    async with api(settings) as (_, client):
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"] == {"database": False}


async def test_an_api_honours_its_pool_size(clean_database: str, amqp_url: str) -> None:
    settings = ServiceSettings(
        database_url=clean_database, amqp_url=amqp_url, health_port=0, database_pool_size=3
    )
    async with api(settings) as (app, _):
        assert app.state.engine.pool.size() == 3


async def server_connections(database_url: str, application: str) -> int:
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url)) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application,)
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])


async def test_the_pool_closes_connections_left_idle(clean_database: str) -> None:
    application = f"idle-{uuid.uuid4().hex[:8]}"
    url = f"{clean_database}?application_name={application}"
    engine = create_engine(url, pool_size=4, idle_timeout=0.5)
    gate = asyncio.Event()

    async def hold_one() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await gate.wait()

    holders = [asyncio.create_task(hold_one()) for _ in range(4)]

    async def four_open() -> bool:
        return await server_connections(clean_database, application) == 4

    await eventually(four_open)
    gate.set()
    await asyncio.gather(*holders)

    async def shrunk_to_what_is_used() -> bool:
        async with engine.connect() as conn:  # a checkout is when idle ones are closed
            await conn.execute(text("SELECT 1"))
        return await server_connections(clean_database, application) == 1

    await eventually(shrunk_to_what_is_used)
    pool = engine.sync_engine.pool
    assert isinstance(pool, FairAsyncQueuePool)
    assert pool.checkedin() == 1
    await engine.dispose()
