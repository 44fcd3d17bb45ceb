"""The worker side through the real broker: copies from events, welcome mail, scan ticks."""

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from contracts import (
    Event,
    ScheduleTick,
    UserDeleted,
    UserRegistered,
    UserRole,
    UserUpdated,
    make_envelope,
)
from notifier.mail.dispatch import Dispatcher
from notifier.main import service
from notifier.models import Delivery, DigestScan, Recipient
from notifier.settings import DIGEST_SCAN_JOB, Settings
from servicekit import Bus, InboxMessage, SessionMaker
from servicekit.testing import eventually
from tests.support import MONDAY_SIX, SmtpServer, add_recipe, address_of, text_part

pytestmark = pytest.mark.integration


@pytest.fixture
async def bus(amqp_url: str, session_maker: SessionMaker, settings: Settings) -> AsyncIterator[Bus]:
    bus = Bus(amqp_url)
    await bus.connect()
    quick_retries = settings.model_copy(update={"retry_delays": (0.05, 0.1)})
    consumer = service.consumer(quick_retries, session_maker)
    await consumer.start(bus)
    yield bus
    await consumer.stop()
    await bus.close()


async def publish(bus: Bus, events: Sequence[Event], *, event_id: uuid.UUID | None = None) -> None:
    await bus.publish_many(
        [(make_envelope(e, producer="test", event_id=event_id), {}) for e in events]
    )


def registered(user_id: int, username: str, version: int = 1, **changes: object) -> UserRegistered:
    fields: dict[str, object] = {
        "user_id": user_id,
        "username": username,
        "email": address_of(username),
        "role": UserRole.CUSTOMER,
        "date_joined": MONDAY_SIX - timedelta(days=3),
        "updated_at": MONDAY_SIX - timedelta(days=3),
        "version": version,
    }
    fields.update(changes)
    return UserRegistered.model_validate(fields)


async def count(session_maker: SessionMaker, model: type[object]) -> int:
    async with session_maker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_registration_sends_one_welcome_mail(
    bus: Bus, session_maker: SessionMaker, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    event = registered(1, "alice")
    await publish(bus, [event])
    await publish(bus, [event])  # a duplicate from a producer retry: another event id
    await eventually(lambda: _has_deliveries(session_maker, 1))
    await dispatcher.send_pending()

    (welcome,) = smtp.mailbox.messages
    assert welcome["Subject"] == "Welcome to the recipe platform"
    assert "Welcome, alice!" in text_part(welcome)
    assert welcome["List-Unsubscribe"] is None  # not a digest


async def test_an_update_applied_before_its_registration_keeps_the_welcome(
    bus: Bus, session_maker: SessionMaker, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    """Issue 15 item 10: the copy skipped the older ``user.registered`` and with it the welcome."""
    changed = UserUpdated.model_validate(
        {**registered(1, "alice").model_dump(), "email": "alice@new.example", "version": 2}
    )
    await publish(bus, [changed])
    await eventually(lambda: _handled(session_maker, 1))
    await publish(bus, [registered(1, "alice")])
    await publish(bus, [registered(1, "alice")])  # and once more: still one welcome
    await eventually(lambda: _handled(session_maker, 3))
    await dispatcher.send_pending()
    (welcome,) = smtp.mailbox.messages
    assert welcome["To"].addresses[0].addr_spec == "alice@new.example"  # the newest address


async def test_no_welcome_for_a_user_deleted_before_the_registration_arrived(
    bus: Bus, session_maker: SessionMaker, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    deleted = UserDeleted(user_id=1, username="alice", version=2, deleted_at=MONDAY_SIX)
    await publish(bus, [deleted])
    await eventually(lambda: _handled(session_maker, 1))
    await publish(bus, [registered(1, "alice")])
    await eventually(lambda: _handled(session_maker, 2))
    await dispatcher.send_pending()
    assert smtp.mailbox.messages == []
    assert await count(session_maker, Delivery) == 0


async def test_only_newer_user_versions_apply(bus: Bus, session_maker: SessionMaker) -> None:
    base = registered(1, "alice", version=1).model_dump()
    await publish(bus, [UserUpdated.model_validate({**base, "username": "alice3", "version": 3})])
    await publish(bus, [UserUpdated.model_validate({**base, "username": "alice2", "version": 2})])

    async def settled() -> bool:
        async with session_maker() as session:
            return (await session.scalar(select(func.count()).select_from(Delivery))) == 0 and (
                await _username(session_maker, 1)
            ) == "alice3"

    await eventually(settled)
    deleted = UserDeleted(user_id=1, username="alice3", version=4, deleted_at=MONDAY_SIX)
    await publish(bus, [deleted])
    await eventually(lambda: _is_deleted(session_maker, 1))
    await publish(bus, [UserUpdated.model_validate({**base, "version": 3})])
    await eventually(lambda: _handled(session_maker, 4))
    assert await _is_deleted(session_maker, 1)


async def test_scan_tick_through_the_broker_twice_plans_once_and_ignores_other_jobs(
    bus: Bus,
    session_maker: SessionMaker,
    dispatcher: Dispatcher,
    smtp: SmtpServer,
) -> None:
    await publish(bus, [registered(1, "alice"), registered(2, "bob")])
    await eventually(lambda: _has_deliveries(session_maker, 2))
    await dispatcher.send_pending()  # the welcomes
    await add_recipe(session_maker, 10, "Pie", seller_id=9, at=MONDAY_SIX - timedelta(hours=2))

    await publish(bus, [ScheduleTick(job="weekly-backup", slot=MONDAY_SIX, cron="0 6 * * *")])
    tick = ScheduleTick(job=DIGEST_SCAN_JOB, slot=MONDAY_SIX, cron="*/15 * * * *")
    tick_id = uuid.uuid4()
    await publish(bus, [tick], event_id=tick_id)
    await publish(bus, [tick], event_id=tick_id)  # redelivered
    await publish(bus, [tick])  # emitted again under another id (it cannot be, but still)
    await eventually(lambda: _has_deliveries(session_maker, 4))
    assert await count(session_maker, DigestScan) == 1

    await dispatcher.send_pending()
    digests = [m for m in smtp.mailbox.messages if m["List-Unsubscribe"] is not None]
    assert sorted(m["To"].addresses[0].addr_spec for m in digests) == [
        address_of("alice"),
        address_of("bob"),
    ]


async def test_a_user_without_an_email_gets_no_mail_until_they_add_one(
    bus: Bus, session_maker: SessionMaker, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    """user.registered v2 may carry no address: no welcome, no digest; an address starts them."""
    silent = registered(1, "noaddr", email=None)
    await publish(bus, [silent, registered(2, "bob")])
    await eventually(lambda: _handled(session_maker, 2))
    await add_recipe(session_maker, 10, "Pie", seller_id=9, at=MONDAY_SIX - timedelta(hours=2))
    scan = ScheduleTick(job=DIGEST_SCAN_JOB, slot=MONDAY_SIX, cron="*/15 * * * *")
    await publish(bus, [scan])
    await eventually(lambda: _handled(session_maker, 3))
    await dispatcher.send_pending()
    assert smtp.mailbox.recipients() == [address_of("bob"), address_of("bob")]

    added = UserUpdated.model_validate(
        {**silent.model_dump(), "email": address_of("noaddr"), "version": 2}
    )
    await publish(bus, [added])
    await eventually(lambda: _handled(session_maker, 4))
    tomorrow = MONDAY_SIX + timedelta(days=1)
    await add_recipe(session_maker, 11, "Tart", seller_id=9, at=tomorrow - timedelta(hours=2))
    await publish(bus, [ScheduleTick(job=DIGEST_SCAN_JOB, slot=tomorrow, cron="*/15 * * * *")])
    await eventually(lambda: _handled(session_maker, 5))
    await dispatcher.send_pending()
    # Digests only: the welcome belonged to the registration.
    assert [m["List-Unsubscribe"] is not None for m in smtp.mailbox.to(address_of("noaddr"))] == [
        True
    ]


async def _has_deliveries(session_maker: SessionMaker, expected: int) -> bool:
    return await count(session_maker, Delivery) >= expected


async def _handled(session_maker: SessionMaker, expected: int) -> bool:
    return await count(session_maker, InboxMessage) >= expected


async def _username(session_maker: SessionMaker, user_id: int) -> str | None:
    async with session_maker() as session:
        recipient = await session.get(Recipient, user_id)
        return recipient.username if recipient is not None else None


async def _is_deleted(session_maker: SessionMaker, user_id: int) -> bool:
    async with session_maker() as session:
        recipient = await session.get(Recipient, user_id)
        return recipient is not None and recipient.deleted
