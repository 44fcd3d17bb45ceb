"""Registering publishes exactly one user.registered through the real broker."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from fastapi import FastAPI
from sqlalchemy import func, select

from auth.app import create_app
from auth.keys import KeyRing
from auth.settings import Settings
from contracts import EXCHANGE_NAME, Envelope
from servicekit import Bus, OutboxMessage, SessionMaker
from servicekit._outbox import OutboxRelay
from servicekit.testing import TcpProxy
from tests.helpers import register

pytestmark = pytest.mark.integration


@pytest.fixture
async def user_events(amqp_url: str) -> AsyncIterator[AbstractQueue]:
    """A test queue bound to every user event on the platform exchange."""
    connection: AbstractRobustConnection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        EXCHANGE_NAME, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue("test.user-events", durable=True)
    await queue.bind(exchange, routing_key="user.*")
    yield queue
    await connection.close()


async def _outbox_size(app: FastAPI) -> int:
    maker: SessionMaker = app.state.session_maker
    async with maker() as session:
        count: int = await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
    return count


async def _wait_until_relayed(app: FastAPI) -> None:
    for _ in range(300):
        if await _outbox_size(app) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the outbox was not relayed")


async def _received(queue: AbstractQueue) -> list[Envelope]:
    """Every message in the queue. The relay deletes a row only after the broker confirmed it,
    and a confirm means the message was routed, so after the outbox is empty this is exact."""
    envelopes = []
    while (message := await queue.get(fail=False, no_ack=True)) is not None:
        envelopes.append(Envelope.model_validate_json(message.body))
    return envelopes


def _assert_one_registration(envelopes: list[Envelope], user: dict[str, Any]) -> None:
    assert [(e.type, e.payload["user_id"]) for e in envelopes] == [("user.registered", user["id"])]


async def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://auth.test")


async def test_the_api_relays_a_registration(
    settings: Settings, key_ring: KeyRing, amqp_url: str, user_events: AbstractQueue
) -> None:
    app = create_app(
        settings.model_copy(update={"amqp_url": amqp_url, "outbox_poll_interval": 0.1}),
        keys=key_ring,
    )
    async with app.router.lifespan_context(app), await _client(app) as client:
        user = await register(client, "alice")
        await _wait_until_relayed(app)
    _assert_one_registration(await _received(user_events), user)


async def test_a_registration_during_a_broker_outage_is_published_once_it_is_back(
    settings: Settings,
    key_ring: KeyRing,
    amqp_url: str,
    amqp_proxy: TcpProxy,
    user_events: AbstractQueue,
) -> None:
    await amqp_proxy.cut()
    app = create_app(
        settings.model_copy(
            update={"amqp_url": amqp_proxy.url_for(amqp_url), "outbox_poll_interval": 0.1}
        ),
        keys=key_ring,
    )
    async with app.router.lifespan_context(app), await _client(app) as client:
        user = await register(client, "alice")
        assert await _outbox_size(app) == 1  # accepted and waiting
        amqp_proxy.restore()
        await _wait_until_relayed(app)
    _assert_one_registration(await _received(user_events), user)


async def test_a_relay_started_later_publishes_the_pending_registration(
    client: httpx.AsyncClient, app: FastAPI, amqp_url: str, user_events: AbstractQueue
) -> None:
    user = await register(client, "alice")  # no relay, no broker connection at all
    bus = Bus(amqp_url)
    await bus.connect()
    try:
        relay = OutboxRelay(app.state.session_maker, bus, listen_url=None)
        assert await relay.drain() == 1
        assert await relay.drain() == 0
    finally:
        await bus.close()
    _assert_one_registration(await _received(user_events), user)
