"""Issue 6 acceptance: who gets a digest, with what, and never twice."""

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from contracts import UserRole, UserUpdated
from notifier.mail.dispatch import Dispatcher
from notifier.mail.mime import OutgoingMail
from notifier.mail.transport import Transport
from notifier.models import Delivery, DeliveryStatus, Recipient
from notifier.service import copies
from notifier.service.planning import scan_for_digests
from notifier.settings import Settings
from notifier.worker import build_dispatcher, build_transport
from servicekit import SessionMaker
from tests.support import (
    MONDAY_SIX,
    SATURDAY_SIX,
    SmtpServer,
    add_rating,
    add_recipe,
    add_user,
    address_of,
    free_port,
    html_part,
    text_part,
)

pytestmark = pytest.mark.integration


async def scan(session_maker: SessionMaker, settings: Settings, slot: datetime) -> int:
    async with session_maker() as session, session.begin():
        return await scan_for_digests(session=session, scan_slot=slot, settings=settings)


async def statuses(session_maker: SessionMaker) -> dict[int, list[str]]:
    async with session_maker() as session:
        rows = (await session.execute(select(col(Delivery.user_id), col(Delivery.status)))).all()
    found: dict[int, list[str]] = {}
    for user_id, status in rows:
        found.setdefault(user_id, []).append(status)
    return found


async def seed_monday(session_maker: SessionMaker) -> None:
    """A customer, a seller, an unsubscribed and a bouncing user; a week of material."""
    await add_user(session_maker, 1, "alice")
    await add_user(session_maker, 2, "bob", role=UserRole.SELLER)
    await add_user(session_maker, 3, "carol", daily_digest=False)
    await add_user(session_maker, 4, "dave", bouncing=True)
    sunday = MONDAY_SIX - timedelta(days=1)
    await add_recipe(session_maker, 10, "Bob's Plum Pie", seller_id=2, at=sunday)
    await add_recipe(session_maker, 11, "Old Stew", seller_id=2, at=MONDAY_SIX - timedelta(days=9))
    await add_recipe(
        session_maker, 12, "Tomorrow's Soup", seller_id=2, at=MONDAY_SIX + timedelta(hours=1)
    )
    await add_rating(
        session_maker, 100, recipe_id=10, recipe_title="Bob's Plum Pie", seller_id=2,
        user_id=1, username="alice", score=5, at=sunday + timedelta(hours=2),
    )  # fmt: skip
    await add_rating(
        session_maker, 101, recipe_id=11, recipe_title="Old Stew", seller_id=2,
        user_id=3, username="carol", score=2, at=MONDAY_SIX - timedelta(days=8),
    )  # fmt: skip


async def test_monday_tick_sends_one_personal_digest_per_subscribed_user(
    session_maker: SessionMaker, settings: Settings, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    await seed_monday(session_maker)

    assert await scan(session_maker, settings, MONDAY_SIX) == 2
    assert await dispatcher.send_pending() == 2

    mailbox = smtp.mailbox
    assert mailbox.recipients() == [address_of("user1"), address_of("user2")]
    (alice,) = mailbox.to(address_of("user1"))
    alice_text = text_part(alice)
    assert "Good morning, alice!" in alice_text
    assert "Bob's Plum Pie (by seller2)" in alice_text  # new since the lookback window
    assert "1. Bob's Plum Pie - 5.0/5 (1 rating)" in alice_text  # best-rated of the week
    assert "Old Stew" not in alice_text  # neither new nor rated this week
    assert "Tomorrow's Soup" not in alice_text  # after the digest's slot
    assert "Ratings your recipes received" not in alice_text
    assert "Monday 23 November" in str(alice["Subject"])

    (bob,) = mailbox.to(address_of("user2"))
    bob_text = text_part(bob)
    assert 'alice gave "Bob\'s Plum Pie" 5/5' in bob_text
    assert "New recipes" not in bob_text  # his own recipe is not news to him
    assert "Bob&#39;s Plum Pie" in html_part(bob)

    assert await statuses(session_maker) == {1: ["sent"], 2: ["sent"]}


async def test_saturday_slot_sends_nothing(
    session_maker: SessionMaker, settings: Settings, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    await seed_monday(session_maker)
    assert await scan(session_maker, settings, SATURDAY_SIX) == 0
    assert await dispatcher.send_pending() == 0
    assert smtp.mailbox.messages == []


async def test_tick_twice_and_two_replicas_send_one_digest_each(
    session_maker: SessionMaker, settings: Settings, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    await seed_monday(session_maker)
    assert await scan(session_maker, settings, MONDAY_SIX) == 2
    assert await scan(session_maker, settings, MONDAY_SIX) == 0  # the same slot again
    # A later scan whose window still reaches back over 06:00 finds the rows already there.
    assert await scan(session_maker, settings, MONDAY_SIX + timedelta(minutes=15)) == 0
    replica_transport = build_transport(settings)
    replica = build_dispatcher(session_maker, settings, replica_transport)
    try:  # two replicas sending at once
        await asyncio.gather(dispatcher.send_pending(), replica.send_pending())
    finally:
        await replica_transport.close()
    assert await scan(session_maker, settings, MONDAY_SIX + timedelta(minutes=30)) == 0
    await dispatcher.send_pending()
    assert smtp.mailbox.recipients() == [address_of("user1"), address_of("user2")]


async def test_second_digest_covers_only_what_came_since_the_first(
    session_maker: SessionMaker, settings: Settings, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    await seed_monday(session_maker)
    await scan(session_maker, settings, MONDAY_SIX)
    await dispatcher.send_pending()
    await add_recipe(
        session_maker, 13, "Tuesday Tart", seller_id=2, at=MONDAY_SIX + timedelta(hours=3)
    )

    await scan(session_maker, settings, MONDAY_SIX + timedelta(days=1))
    await dispatcher.send_pending()

    first, second = smtp.mailbox.to(address_of("user1"))
    assert "Bob's Plum Pie (by seller2)" in text_part(first)
    second_text = text_part(second)
    assert "Tuesday Tart (by seller2)" in second_text
    assert "Tomorrow's Soup (by seller2)" in second_text
    assert "Bob's Plum Pie (by seller2)" not in second_text  # told yesterday
    # Bob's rating was reported on Monday; Tuesday has none new for him, only the week's best.
    (_, bob_second) = smtp.mailbox.to(address_of("user2"))
    assert "Ratings your recipes received" not in text_part(bob_second)


async def test_nothing_to_say_sends_no_mail(
    session_maker: SessionMaker, settings: Settings, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    await add_user(session_maker, 1, "alice")
    await scan(session_maker, settings, MONDAY_SIX)
    await dispatcher.send_pending()
    assert smtp.mailbox.messages == []
    assert await statuses(session_maker) == {1: ["skipped"]}


async def test_users_in_two_zones_get_theirs_at_their_own_six(
    session_maker: SessionMaker, settings: Settings, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    await add_user(session_maker, 1, "berlin", timezone="Europe/Berlin")
    await add_user(session_maker, 2, "newyork", timezone="America/New_York")
    await add_user(session_maker, 3, "london")  # the default zone, UTC
    await add_recipe(session_maker, 10, "Pie", seller_id=9, at=MONDAY_SIX - timedelta(days=1))

    berlin_six = MONDAY_SIX - timedelta(hours=1)  # 06:00 CET is 05:00 UTC
    assert await scan(session_maker, settings, berlin_six - timedelta(minutes=15)) == 0
    assert await scan(session_maker, settings, berlin_six) == 1
    await dispatcher.send_pending()
    assert smtp.mailbox.recipients() == [address_of("user1")]

    assert await scan(session_maker, settings, MONDAY_SIX) == 1
    await dispatcher.send_pending()
    assert smtp.mailbox.recipients() == [address_of("user1"), address_of("user3")]

    new_york_six = MONDAY_SIX + timedelta(hours=5)  # 06:00 EST is 11:00 UTC
    assert await scan(session_maker, settings, new_york_six - timedelta(minutes=15)) == 0
    assert await scan(session_maker, settings, new_york_six) == 1
    await dispatcher.send_pending()
    assert smtp.mailbox.recipients() == [address_of(f"user{n}") for n in (1, 2, 3)]


async def test_missed_slot_is_caught_up_within_grace_only(
    session_maker: SessionMaker, settings: Settings, dispatcher: Dispatcher
) -> None:
    await add_user(session_maker, 1, "alice")
    await scan(session_maker, settings, MONDAY_SIX - timedelta(hours=4))
    # Down from 02:00 to 07:30: the first scan after restart still plans the 06:00 digest.
    assert await scan(session_maker, settings, MONDAY_SIX + timedelta(minutes=90)) == 1
    # Down all Tuesday morning, back at 09:00: 06:00 is out of the two-hour grace.
    tuesday_nine = MONDAY_SIX + timedelta(days=1, hours=3)
    assert await scan(session_maker, settings, tuesday_nine) == 0


class CancelAfter:
    """A transport that cancels the sending task once it has sent ``mails`` messages."""

    def __init__(self, inner: Transport, *, mails: int) -> None:
        self._inner = inner
        self._mails = mails
        self.task: asyncio.Task[int] | None = None

    async def send(self, mail: OutgoingMail) -> None:
        await self._inner.send(mail)
        self._mails -= 1
        if self._mails == 0:
            assert self.task is not None
            self.task.cancel()

    async def close(self) -> None:
        return None


async def test_worker_killed_half_way_resumes_and_sends_each_digest_once(
    session_maker: SessionMaker,
    settings: Settings,
    dispatcher: Dispatcher,
    transport: Transport,
    smtp: SmtpServer,
) -> None:
    users = range(1, 21)
    for user_id in users:
        await add_user(session_maker, user_id, f"user{user_id}")
    await add_recipe(session_maker, 10, "Pie", seller_id=99, at=MONDAY_SIX - timedelta(hours=5))
    await scan(session_maker, settings, MONDAY_SIX)

    killer = CancelAfter(transport, mails=5)
    dying = build_dispatcher(session_maker, settings, killer)
    killer.task = sending = asyncio.create_task(dying.send_pending())
    with pytest.raises(asyncio.CancelledError):
        await sending
    sent_before_restart = len(smtp.mailbox.messages)
    assert 5 <= sent_before_restart < len(users)

    await scan(session_maker, settings, MONDAY_SIX)  # the tick redelivered after the restart
    await dispatcher.send_pending()
    assert smtp.mailbox.recipients() == sorted(address_of(f"user{n}") for n in users)
    assert all(status == ["sent"] for status in (await statuses(session_maker)).values())


async def test_mail_interrupted_mid_send_is_not_resent(
    session_maker: SessionMaker, settings: Settings, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    """A row left "sending" by a dead worker may have gone out: at most once wins."""
    await add_user(session_maker, 1, "alice")
    await add_user(session_maker, 2, "bob")
    await add_recipe(session_maker, 10, "Pie", seller_id=99, at=MONDAY_SIX - timedelta(hours=5))
    await scan(session_maker, settings, MONDAY_SIX)
    async with session_maker() as session, session.begin():
        row = await session.scalar(select(Delivery).where(col(Delivery.user_id) == 1))
        assert row is not None
        row.status = DeliveryStatus.SENDING
        row.claimed_at = MONDAY_SIX - settings.sending_timeout  # long ago: its worker is gone

    assert await dispatcher.recover_interrupted() == 1
    await dispatcher.send_pending()
    assert smtp.mailbox.recipients() == [address_of("user2")]
    assert await statuses(session_maker) == {1: ["failed"], 2: ["sent"]}


async def test_permanent_refusal_marks_bouncing_and_stops_digests(
    session_maker: SessionMaker, settings: Settings, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    await add_user(session_maker, 1, "alice")
    await add_user(session_maker, 2, "bob")
    await add_recipe(session_maker, 10, "Pie", seller_id=99, at=MONDAY_SIX - timedelta(hours=5))
    smtp.mailbox.refuse[address_of("user2")] = "550 5.1.1 no such user"

    await scan(session_maker, settings, MONDAY_SIX)
    await dispatcher.send_pending()
    async with session_maker() as session:
        bob = await session.get(Recipient, 2)
    assert bob is not None and bob.bouncing
    assert await statuses(session_maker) == {1: ["sent"], 2: ["failed"]}

    await add_recipe(session_maker, 11, "Tart", seller_id=99, at=MONDAY_SIX + timedelta(hours=5))
    assert await scan(session_maker, settings, MONDAY_SIX + timedelta(days=1)) == 1  # alice only
    await dispatcher.send_pending()
    assert smtp.mailbox.recipients() == [address_of("user1")] * 2


async def test_temporary_failure_is_retried_and_sent_once(
    session_maker: SessionMaker, settings: Settings, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    await add_user(session_maker, 1, "alice")
    await add_recipe(session_maker, 10, "Pie", seller_id=99, at=MONDAY_SIX - timedelta(hours=5))
    smtp.mailbox.defer[address_of("user1")] = 2

    await scan(session_maker, settings, MONDAY_SIX)
    while (await statuses(session_maker))[1] == ["pending"]:
        await dispatcher.send_pending()
    assert smtp.mailbox.recipients() == [address_of("user1")]
    async with session_maker() as session:
        attempts = await session.scalar(select(func.max(col(Delivery.attempts))))
    assert attempts == 3


async def test_hostile_username_reaches_the_mail_harmlessly(
    session_maker: SessionMaker, settings: Settings, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    hostile = 'Eve\r\nBcc: victim@example.test\r\n<script>alert("x")</script>'
    await add_user(session_maker, 1, hostile)
    await add_recipe(session_maker, 10, "Pie", seller_id=99, at=MONDAY_SIX - timedelta(hours=5))
    await scan(session_maker, settings, MONDAY_SIX)
    await dispatcher.send_pending()

    (message,) = smtp.mailbox.messages
    assert smtp.mailbox.envelopes[0][1] == [address_of("user1")]
    assert message["Bcc"] is None
    assert "victim" not in "".join(f"{k}: {v}" for k, v in message.items() if k != "To")
    (to,) = message["To"].addresses
    assert to.addr_spec == address_of("user1")
    assert "\r" not in to.display_name and "\n" not in to.display_name
    html = html_part(message)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


async def test_unreachable_server_uses_up_no_attempt_and_mail_goes_later(
    session_maker: SessionMaker, settings: Settings, dispatcher: Dispatcher, smtp: SmtpServer
) -> None:
    await add_user(session_maker, 1, "alice")
    await add_recipe(session_maker, 10, "Pie", seller_id=99, at=MONDAY_SIX - timedelta(hours=5))
    await scan(session_maker, settings, MONDAY_SIX)
    down = settings.model_copy(update={"smtp_port": free_port(), "send_attempts": 1})
    unreachable = build_transport(down)
    try:
        await build_dispatcher(session_maker, down, unreachable).send_pending()
    finally:
        await unreachable.close()
    async with session_maker() as session:
        row = await session.scalar(select(Delivery))
    assert row is not None
    assert (row.status, row.attempts) == ("pending", 0)
    assert row.error is not None

    await dispatcher.send_pending()
    assert smtp.mailbox.recipients() == [address_of("user1")]


async def test_a_new_address_ends_bouncing(session_maker: SessionMaker, settings: Settings) -> None:
    await add_user(session_maker, 1, "alice", bouncing=True)
    async with session_maker() as session, session.begin():
        recipient = await session.get(Recipient, 1)
        assert recipient is not None
        same = UserUpdated(
            user_id=1,
            username="alice",
            email=recipient.email,
            role=UserRole.CUSTOMER,
            date_joined=MONDAY_SIX,
            updated_at=MONDAY_SIX,
            version=2,
        )
        await copies.apply_user(session=session, event=same)
    assert await scan(session_maker, settings, MONDAY_SIX) == 0  # still the bouncing address

    async with session_maker() as session, session.begin():
        moved = same.model_copy(update={"email": "alice@new.example.test", "version": 3})
        await copies.apply_user(session=session, event=moved)
    assert await scan(session_maker, settings, MONDAY_SIX + timedelta(days=1)) == 1
