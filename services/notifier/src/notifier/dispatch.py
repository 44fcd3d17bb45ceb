"""Sending planned mail at most once: claim, compose, send, record.

Each of ``smtp_connections`` workers claims one pending delivery at a time, moving it to
``sending`` in its own committed transaction *before* the mail goes out (``FOR UPDATE SKIP
LOCKED``, so replicas and workers never claim the same row), then records ``sent``, ``skipped``
or ``failed``, or puts it back to ``pending`` after a temporary failure. A worker that is
cancelled (SIGTERM) finishes the mail in hand and claims no more; rows still pending are sent by
the next run.

A row found ``sending`` longer than ``sending_timeout`` belonged to a worker that died between
claim and record: whether its mail went out is unknown. For mail we prefer at-most-once, so such
a row is marked failed (``interrupted``) and not resent, unless ``resend_interrupted`` is set.
At most ``smtp_connections`` mails per crashed worker are in that state.

A 4xx for one recipient puts its row back with a delay (``send_retry_delay`` times the
attempt) until ``send_attempts`` are used up; a server that cannot be reached uses up no
attempt: the round stops and the next one (``dispatch_interval`` later) tries again. A 5xx
marks the address bouncing: no further digests go to it until the user's address changes.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from notifier.content import DigestMaterial
from notifier.mail import InvalidAddress, MailComposer, MailRecipient
from notifier.metrics import DIGESTS_DUE, DIGESTS_SENT, MAIL_FAILURES
from notifier.models import Delivery, DeliveryStatus, MailKind, Recipient
from notifier.settings import Settings
from notifier.transport import (
    PermanentMailError,
    ServerUnavailable,
    TemporaryMailError,
    Transport,
)
from servicekit.db import SessionMaker

logger = logging.getLogger(__name__)

_CLAIM = text(
    """
    WITH next AS (
        SELECT id FROM deliveries
        WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= now())
        ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    UPDATE deliveries d
    SET status = 'sending', claimed_at = now(), attempts = d.attempts + 1
    FROM next WHERE d.id = next.id
    RETURNING d.id, d.kind, d.user_id, d.digest_date, d.as_of, d.attempts
    """
)

_RECIPIENT = text(
    """
    SELECT r.username, r.email, r.role, r.active AND NOT r.deleted AND NOT r.bouncing,
           coalesce(p.daily_digest, true),
           (SELECT max(s.as_of) FROM deliveries s
            WHERE s.user_id = r.user_id AND s.kind = 'digest' AND s.status = 'sent'
              AND s.as_of < :as_of)
    FROM recipients r LEFT JOIN preferences p ON p.user_id = r.user_id
    WHERE r.user_id = :user_id
    """
)


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    kind: str
    user_id: int
    digest_date: date | None
    as_of: datetime
    attempts: int


@dataclass(frozen=True)
class Send:
    message: EmailMessage
    recipient: MailRecipient


@dataclass(frozen=True)
class Sent:
    pass


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Fail:
    reason: str


@dataclass(frozen=True)
class Bounce(Fail):
    email: str


@dataclass(frozen=True)
class Release:
    reason: str


@dataclass(frozen=True)
class Retry:
    reason: str
    at: datetime


Outcome = Send | Sent | Skip | Fail | Retry | Release


class RateLimiter:
    """At most ``per_second`` acquisitions a second across all workers (0: unlimited)."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._clock = clock
        self._sleep = sleep

    async def acquire(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self._interval  # reserve the slot before sleeping
        if start > now:
            await self._sleep(start - now)


class Dispatcher:
    def __init__(
        self,
        session_maker: SessionMaker,
        transport: Transport,
        composer: MailComposer,
        settings: Settings,
    ) -> None:
        self._session_maker = session_maker
        self._transport = transport
        self._composer = composer
        self._settings = settings
        self._limiter = RateLimiter(settings.max_per_second)
        self._stopping = False

    async def send_pending(self) -> int:
        """Send every claimable mail; returns how many deliveries were settled."""
        self._stopping = False
        material = DigestMaterial(list_limit=self._settings.digest_list_limit)
        workers = asyncio.gather(
            *(self._work(material) for _ in range(self._settings.smtp_connections)),
            return_exceptions=True,
        )
        try:
            results = await asyncio.shield(workers)
        except asyncio.CancelledError:
            self._stopping = True  # finish the mails in hand, claim no more
            await workers
            raise
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(r for r in results if isinstance(r, int))

    async def run(self) -> None:
        """Send pending mail forever (the worker's loop)."""
        while True:
            try:
                await self.recover_interrupted()
                await self.send_pending()
                await self.refresh_due_gauge()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("mail dispatch failed; retrying")
            await asyncio.sleep(self._settings.dispatch_interval)

    async def recover_interrupted(self) -> int:
        """Settle rows whose worker died mid-send (see the module doc for the choice)."""
        resend = self._settings.resend_interrupted
        async with self._session_maker() as session, session.begin():
            result = await session.execute(
                update(Delivery)
                .where(
                    col(Delivery.status) == DeliveryStatus.SENDING,
                    col(Delivery.claimed_at) < func.now() - self._settings.sending_timeout,
                )
                .values(
                    status=DeliveryStatus.PENDING if resend else DeliveryStatus.FAILED,
                    error="interrupted while sending; outcome unknown",
                )
            )
        count = int(getattr(result, "rowcount", 0) or 0)
        if count:
            MAIL_FAILURES.labels("interrupted").inc(count)
            logger.warning("%d interrupted mails %s", count, "resent" if resend else "given up")
        return count

    async def refresh_due_gauge(self) -> None:
        async with self._session_maker() as session:
            due = await session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(
                    col(Delivery.kind) == MailKind.DIGEST,
                    col(Delivery.status) == DeliveryStatus.PENDING,
                )
            )
        DIGESTS_DUE.set(due or 0)

    async def _work(self, material: DigestMaterial) -> int:
        settled = 0
        while not self._stopping:
            async with self._session_maker() as session, session.begin():
                row = (await session.execute(_CLAIM)).one_or_none()
                if row is None:
                    return settled
                claimed = Claimed(*row)
                try:
                    outcome = await self._prepare(session, claimed, material)
                except SQLAlchemyError:
                    raise  # the claim rolls back; the row stays pending for the next round
                except Exception as exc:
                    logger.exception("mail %d cannot be composed", claimed.delivery_id)
                    outcome = Fail(f"cannot be composed: {exc!r}")
            outcome = await self._settle(claimed, outcome)
            settled += 1
            if isinstance(outcome, Release):
                return settled  # the server is unavailable: the next round tries again
        return settled

    async def _prepare(
        self, session: AsyncSession, claimed: Claimed, material: DigestMaterial
    ) -> Outcome:
        """Compose the mail inside the claim transaction (read-only), or say why not."""
        found = (
            await session.execute(_RECIPIENT, {"user_id": claimed.user_id, "as_of": claimed.as_of})
        ).one_or_none()
        if found is None:
            return Skip("unknown user")
        username, email, role, reachable, wants_digest, last_sent = found
        recipient = MailRecipient(claimed.user_id, username, email, role)
        if not reachable:
            return Skip("user inactive, deleted or bouncing")
        try:
            if claimed.kind == MailKind.WELCOME:
                return Send(self._composer.welcome(to=recipient), recipient)
            if not wants_digest:
                return Skip("unsubscribed")
            since = last_sent or claimed.as_of - self._settings.first_digest_lookback
            content = await material.digest_for(
                session,
                user_id=claimed.user_id,
                is_seller=role == "seller",
                since=since,
                as_of=claimed.as_of,
            )
            if content.is_empty and self._settings.skip_empty:
                return Skip("nothing new")
            assert claimed.digest_date is not None
            message = self._composer.digest(
                to=recipient, digest_date=claimed.digest_date, content=content
            )
            return Send(message, recipient)
        except InvalidAddress as exc:
            MAIL_FAILURES.labels("invalid_address").inc()
            return Fail(str(exc))

    async def _settle(self, claimed: Claimed, outcome: Outcome) -> Outcome:
        if isinstance(outcome, Send):
            outcome = await self._send(claimed, outcome)
        values: dict[str, object]
        if isinstance(outcome, Release):
            # Not this mail's fault: back to pending without using up an attempt.
            values = {
                "status": DeliveryStatus.PENDING,
                "attempts": claimed.attempts - 1,
                "error": outcome.reason,
            }
        elif isinstance(outcome, Sent):
            values = {"status": DeliveryStatus.SENT, "sent_at": datetime.now(UTC), "error": None}
        elif isinstance(outcome, Retry):
            values = {
                "status": DeliveryStatus.PENDING,
                "next_attempt_at": outcome.at,
                "error": outcome.reason,
            }
        elif isinstance(outcome, Skip):
            values = {"status": DeliveryStatus.SKIPPED, "error": outcome.reason}
        else:
            assert isinstance(outcome, Fail)
            values = {"status": DeliveryStatus.FAILED, "error": outcome.reason[:2000]}
        async with self._session_maker() as session, session.begin():
            await session.execute(
                update(Delivery)
                .where(
                    col(Delivery.id) == claimed.delivery_id,
                    col(Delivery.status) == DeliveryStatus.SENDING,
                )
                .values(**values)
            )
            if isinstance(outcome, Bounce):
                await session.execute(
                    update(Recipient)
                    .where(
                        col(Recipient.user_id) == claimed.user_id,
                        col(Recipient.email) == outcome.email,
                    )
                    .values(bouncing=True)
                )
        return outcome

    async def _send(self, claimed: Claimed, send: Send) -> Outcome:
        await self._limiter.acquire()
        try:
            await self._transport.send(send.message)
        except ServerUnavailable as exc:
            MAIL_FAILURES.labels("server_unavailable").inc()
            logger.warning("mail server unavailable: %s", exc)
            return Release(str(exc))
        except PermanentMailError as exc:
            MAIL_FAILURES.labels("permanent").inc()
            logger.warning("mail %d refused for good: %s", claimed.delivery_id, exc)
            return Bounce(f"refused: {exc}", send.recipient.email)
        except Exception as exc:
            if not isinstance(exc, TemporaryMailError):
                logger.exception("mail %d: unexpected transport error", claimed.delivery_id)
            MAIL_FAILURES.labels("temporary").inc()
            if claimed.attempts >= self._settings.send_attempts:
                return Fail(f"gave up after {claimed.attempts} attempts: {exc}")
            delay = self._settings.send_retry_delay * claimed.attempts
            return Retry(f"attempt {claimed.attempts}: {exc}", datetime.now(UTC) + delay)
        if claimed.kind == MailKind.DIGEST:
            DIGESTS_SENT.inc()
        return Sent()
