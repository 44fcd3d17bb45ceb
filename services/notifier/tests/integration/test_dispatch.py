"""Batches: claimed together, sent over several connections, recorded together, never twice."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from notifier.mail.mime import OutgoingMail
from notifier.mail.transport import ServerUnavailable, Transport
from notifier.models import Delivery
from notifier.service.planning import plan_digests
from notifier.settings import Settings
from notifier.worker import build_dispatcher, build_transport
from servicekit import SessionMaker
from tests.support import MONDAY_SIX, SmtpServer, add_recipe, add_user, address_of, text_part

pytestmark = pytest.mark.integration


async def plan_for(session_maker: SessionMaker, users: int) -> None:
    for user_id in range(1, users + 1):
        await add_user(session_maker, user_id, f"user{user_id}")
    await add_recipe(session_maker, 10, "Pie", seller_id=999, at=MONDAY_SIX - timedelta(hours=5))
    async with session_maker() as session, session.begin():
        await plan_digests(
            session=session, digest_date=MONDAY_SIX.date(), as_of=MONDAY_SIX, default_zone="UTC"
        )


async def rows(session_maker: SessionMaker) -> dict[int, tuple[str, int]]:
    """user id → (status, attempts)"""
    async with session_maker() as session:
        found = await session.execute(
            select(col(Delivery.user_id), col(Delivery.status), col(Delivery.attempts))
        )
    return {user_id: (status, attempts) for user_id, status, attempts in found}


async def test_batches_send_each_user_their_own_digest(
    session_maker: SessionMaker, settings: Settings, smtp: SmtpServer
) -> None:
    await plan_for(session_maker, 23)
    batched = settings.model_copy(update={"dispatch_batch": 5, "dispatch_concurrency": 2})
    transport = build_transport(batched)
    try:
        assert await build_dispatcher(session_maker, batched, transport).send_pending() == 23
    finally:
        await transport.close()

    assert smtp.mailbox.recipients() == sorted(address_of(f"user{n}") for n in range(1, 24))
    for n in range(1, 24):
        (mail,) = smtp.mailbox.to(address_of(f"user{n}"))
        assert f"Good morning, user{n}!" in text_part(mail)
    assert set((await rows(session_maker)).values()) == {("sent", 1)}


async def test_concurrent_dispatchers_never_send_one_delivery_twice(
    session_maker: SessionMaker, settings: Settings, smtp: SmtpServer
) -> None:
    await plan_for(session_maker, 60)
    small = settings.model_copy(update={"dispatch_batch": 4, "dispatch_concurrency": 3})
    transports = [build_transport(small) for _ in range(3)]
    try:
        settled = await asyncio.gather(
            *(build_dispatcher(session_maker, small, t).send_pending() for t in transports)
        )
    finally:
        for transport in transports:
            await transport.close()

    assert sum(settled) == 60
    assert smtp.mailbox.recipients() == sorted(address_of(f"user{n}") for n in range(1, 61))
    assert set((await rows(session_maker)).values()) == {("sent", 1)}


class GoesAwayAfter:
    """A transport whose server is unreachable from the ``mails + 1``-th mail on."""

    def __init__(self, inner: Transport, *, mails: int) -> None:
        self._inner = inner
        self._left = mails

    async def send(self, mail: OutgoingMail) -> None:
        self._left -= 1
        if self._left < 0:
            raise ServerUnavailable("connection refused")
        await self._inner.send(mail)

    async def close(self) -> None:
        return None


async def test_server_gone_mid_batch_puts_the_unsent_back_without_using_an_attempt(
    session_maker: SessionMaker, settings: Settings, transport: Transport, smtp: SmtpServer
) -> None:
    await plan_for(session_maker, 10)
    one_batch = settings.model_copy(update={"dispatch_batch": 10, "dispatch_concurrency": 1})
    flaky = GoesAwayAfter(transport, mails=3)

    assert await build_dispatcher(session_maker, one_batch, flaky).send_pending() == 10

    assert len(smtp.mailbox.messages) == 3
    states = await rows(session_maker)
    assert sorted(states.values()) == [("pending", 0)] * 7 + [("sent", 1)] * 3
    await build_dispatcher(session_maker, one_batch, transport).send_pending()
    assert smtp.mailbox.recipients() == sorted(address_of(f"user{n}") for n in range(1, 11))
