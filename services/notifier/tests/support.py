"""Test helpers: a real SMTP server on loopback, users and digest material written as events."""

import email
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from contracts import RatingAdded, RecipeCreated, UserRegistered, UserRole
from notifier.models import Preference, Recipient
from notifier.service import copies
from servicekit import SessionMaker

#: Monday 23 November 2026, 06:00 UTC, and the days around it.
MONDAY_SIX = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
SATURDAY_SIX = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def open_connections_to(port: int) -> int:
    """TCP connections to 127.0.0.1:``port`` still established on their client side (from
    /proc/net/tcp: the sockets a client has not closed, whoever holds them)."""
    established = "01"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == established and int(remote.split(":")[1], 16) == port:
            count += 1
    return count


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Mailbox:
    """An aiosmtpd handler keeping every accepted message; it can refuse recipients."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    #: address → SMTP reply refusing it for good (e.g. "550 no such user").
    refuse: dict[str, str] = field(default_factory=dict)
    #: address → how many more times to answer "451" first.
    defer: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802  (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        with self._lock:
            if self.defer.get(address, 0) > 0:
                self.defer[address] -= 1
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"].addresses[0].addr_spec == address]

    def recipients(self) -> list[str]:
        with self._lock:
            return sorted(m["To"].addresses[0].addr_spec for m in self.messages)


class SmtpServer:
    def __init__(self) -> None:
        self.mailbox = Mailbox()
        self.port = free_port()
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    def start(self) -> "SmtpServer":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


def address_of(username: str) -> str:
    return f"{username.lower()}@example.test"


async def add_user(
    session_maker: SessionMaker,
    user_id: int,
    username: str,
    *,
    role: UserRole = UserRole.CUSTOMER,
    timezone: str | None = None,
    daily_digest: bool = True,
    bouncing: bool = False,
    email_address: str | None = None,
) -> None:
    joined = MONDAY_SIX - timedelta(days=30)
    event = UserRegistered(
        user_id=user_id,
        username=username,
        email=email_address or address_of(f"user{user_id}"),
        role=role,
        date_joined=joined,
        updated_at=joined,
        version=1,
    )
    async with session_maker() as session, session.begin():
        await copies.apply_user(session=session, event=event)
        if timezone is not None or not daily_digest:
            session.add(Preference(user_id=user_id, timezone=timezone, daily_digest=daily_digest))
        if bouncing:
            recipient = await session.get(Recipient, user_id)
            assert recipient is not None
            recipient.bouncing = True


async def add_recipe(
    session_maker: SessionMaker, recipe_id: int, title: str, *, seller_id: int, at: datetime
) -> None:
    event = RecipeCreated(
        recipe_id=recipe_id,
        seller_id=seller_id,
        seller_username=f"seller{seller_id}",
        title=title,
        created_at=at,
        updated_at=at,
    )
    async with session_maker() as session, session.begin():
        await copies.apply_recipe_created(session=session, event=event)


async def add_rating(
    session_maker: SessionMaker,
    rating_id: int,
    *,
    recipe_id: int,
    recipe_title: str,
    seller_id: int,
    user_id: int,
    username: str,
    score: int,
    at: datetime,
) -> None:
    event = RatingAdded(
        rating_id=rating_id,
        recipe_id=recipe_id,
        recipe_title=recipe_title,
        seller_id=seller_id,
        user_id=user_id,
        username=username,
        score=score,
        avg_rating=float(score),
        rating_count=1,
        rated_at=at,
    )
    async with session_maker() as session, session.begin():
        await copies.apply_rating(session=session, event=event)


def html_part(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def text_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())
