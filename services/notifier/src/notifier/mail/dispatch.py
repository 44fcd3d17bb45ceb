"""Sending planned mail at most once: claim a batch, compose, send, record the batch.

A dispatcher runs ``dispatch_concurrency`` batch loops, so that while one claims, composes or
records, another keeps the SMTP connections busy. A loop claims up to ``dispatch_batch``
pending deliveries at a time, moving them to ``sending`` in one committed transaction *before*
any of their mail goes out (``FOR UPDATE SKIP LOCKED``, so replicas and loops never claim the
same row), composes them, sends them over ``smtp_connections`` lanes (one reused SMTP connection
each), then records every ``sent``, ``skipped`` or ``failed`` of the batch in one transaction,
or puts a row back to ``pending`` after a temporary failure. A dispatcher that is cancelled
(SIGTERM) finishes the mails in flight, puts its batches' unsent rows back to ``pending`` and
claims no more.

A row found ``sending`` longer than ``sending_timeout`` belonged to a dispatcher that died
between claim and record: whether its mail went out is unknown. For mail we prefer
at-most-once, so such a row is marked failed (``interrupted``) and not resent, unless
``resend_interrupted`` is set. At most ``dispatch_batch`` times ``dispatch_concurrency`` mails
per crashed dispatcher are in that state: the price of two transactions per batch instead of
two per mail.

A 4xx for one recipient puts its row back with a delay (``send_retry_delay`` times the
attempt) until ``send_attempts`` are used up; a server that cannot be reached uses up no
attempt: the batch's unsent rows go back to pending, the round stops and the next one
(``dispatch_interval`` later) tries again. A 5xx marks the address bouncing: no further digests
go to it until the user's address changes.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from notifier.mail.compose import InvalidAddress, MailComposer, MailRecipient
from notifier.mail.content import DigestMaterial
from notifier.mail.mime import OutgoingMail
from notifier.mail.rate_limit import RateLimiter
from notifier.mail.transport import (
    PermanentMailError,
    ServerUnavailable,
    TemporaryMailError,
    Transport,
)
from notifier.metrics import DIGESTS_DUE, DIGESTS_SENT, MAIL_FAILURES
from notifier.models import Delivery, DeliveryStatus, MailKind
from notifier.settings import Settings
from servicekit import SessionMaker

logger = logging.getLogger(__name__)

#: Claims a batch and reads each row's recipient, in one statement. The recipient columns are
#: NULL for a user the notifier does not know.
_CLAIM = text(
    """
    WITH next AS (
        SELECT id FROM deliveries
        WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= now())
        ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE deliveries d
        SET status = 'sending', claimed_at = now(), attempts = d.attempts + 1
        FROM next WHERE d.id = next.id
        RETURNING d.id, d.kind, d.user_id, d.digest_date, d.as_of, d.attempts
    )
    SELECT c.id, c.kind, c.user_id, c.digest_date, c.as_of, c.attempts,
           r.username, r.email, r.role, r.active AND NOT r.deleted AND NOT r.bouncing,
           coalesce(p.daily_digest, true),
           (SELECT max(s.as_of) FROM deliveries s
            WHERE s.user_id = c.user_id AND s.kind = 'digest' AND s.status = 'sent'
              AND s.as_of < c.as_of)
    FROM claimed c
    LEFT JOIN recipients r ON r.user_id = c.user_id
    LEFT JOIN preferences p ON p.user_id = c.user_id
    ORDER BY c.id
    """
)

#: Records a batch; ``d.status = 'sending'`` leaves alone a row that was settled meanwhile.
_SETTLE = text(
    """
    UPDATE deliveries d
    SET status = s.status, error = s.error, attempts = d.attempts - s.refund,
        next_attempt_at = coalesce(s.next_attempt_at, d.next_attempt_at),
        sent_at = coalesce(s.sent_at, d.sent_at)
    FROM unnest(CAST(:ids AS integer[]), CAST(:statuses AS text[]), CAST(:errors AS text[]),
                CAST(:refunds AS integer[]), CAST(:next_attempts AS timestamptz[]),
                CAST(:sent_at AS timestamptz[]))
         AS s(id, status, error, refund, next_attempt_at, sent_at)
    WHERE d.id = s.id AND d.status = 'sending'
    """
)

_MARK_BOUNCING = text(
    """
    UPDATE recipients r SET bouncing = true
    FROM unnest(CAST(:user_ids AS integer[]), CAST(:emails AS text[])) AS b(user_id, email)
    WHERE r.user_id = b.user_id AND r.email = b.email
    """
)

_ERROR_LIMIT = 2000  # the column's length


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    kind: str
    user_id: int
    digest_date: date | None
    as_of: datetime
    attempts: int
    #: The recipient's columns: None when the user is unknown.
    username: str | None
    email: str | None
    role: str | None
    reachable: bool | None
    wants_digest: bool
    last_sent: datetime | None


@dataclass(frozen=True)
class Send:
    mail: OutgoingMail
    recipient: MailRecipient


@dataclass(frozen=True)
class Sent:
    at: datetime


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


@dataclass(frozen=True)
class Settlement:
    """What recording an outcome writes to its row."""

    status: str
    error: str | None
    #: Attempts given back: a release was not this mail's fault.
    refund: int = 0
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None


def settlement_of(outcome: Outcome) -> Settlement:
    if isinstance(outcome, Sent):
        return Settlement(DeliveryStatus.SENT, None, sent_at=outcome.at)
    if isinstance(outcome, Release):
        return Settlement(DeliveryStatus.PENDING, outcome.reason, refund=1)
    if isinstance(outcome, Retry):
        return Settlement(DeliveryStatus.PENDING, outcome.reason, next_attempt_at=outcome.at)
    if isinstance(outcome, Skip):
        return Settlement(DeliveryStatus.SKIPPED, outcome.reason)
    assert isinstance(outcome, Fail), outcome  # a Send is sent before it is settled
    return Settlement(DeliveryStatus.FAILED, outcome.reason)


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
        loops = asyncio.gather(
            *(self._send_batches(material) for _ in range(self._settings.dispatch_concurrency)),
            return_exceptions=True,
        )
        try:
            results = await asyncio.shield(loops)
        except asyncio.CancelledError:
            self._stopping = True  # finish the mails in flight, claim no more
            await loops
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

    async def _send_batches(self, material: DigestMaterial) -> int:
        settled = 0
        while not self._stopping:
            batch = await self._claim(material)
            if not batch:
                break
            outcomes = await self._send_batch(batch)
            await self._settle(batch, outcomes)
            settled += len(batch)
            if any(isinstance(outcome, Release) for outcome in outcomes):
                break  # the server is unavailable (or we stop): the next round tries again
        return settled

    async def _claim(self, material: DigestMaterial) -> list[tuple[Claimed, Outcome]]:
        """Claim a batch and compose its mails in one transaction (read-only after the claim)."""
        async with self._session_maker() as session, session.begin():
            rows = (await session.execute(_CLAIM, {"limit": self._settings.dispatch_batch})).all()
            batch: list[tuple[Claimed, Outcome]] = []
            for row in rows:
                claimed = Claimed(*row)
                try:
                    outcome = await self._prepare(session, claimed, material)
                except SQLAlchemyError:
                    raise  # the claim rolls back; the rows stay pending for the next round
                except Exception as exc:
                    logger.exception("mail %d cannot be composed", claimed.delivery_id)
                    outcome = Fail(f"cannot be composed: {exc!r}")
                batch.append((claimed, outcome))
        return batch

    async def _prepare(
        self, session: AsyncSession, claimed: Claimed, material: DigestMaterial
    ) -> Outcome:
        """Compose the mail, or say why not."""
        if claimed.username is None or claimed.role is None:
            return Skip("unknown user")
        if claimed.email is None:
            return Skip("no email address")
        recipient = MailRecipient(claimed.user_id, claimed.username, claimed.email, claimed.role)
        if not claimed.reachable:
            return Skip("user inactive, deleted or bouncing")
        try:
            if claimed.kind == MailKind.WELCOME:
                return Send(self._composer.welcome(to=recipient), recipient)
            if not claimed.wants_digest:
                return Skip("unsubscribed")
            since = claimed.last_sent or claimed.as_of - self._settings.first_digest_lookback
            content = await material.digest_for(
                session,
                user_id=claimed.user_id,
                is_seller=claimed.role == "seller",
                since=since,
                as_of=claimed.as_of,
            )
            if content.is_empty and self._settings.skip_empty:
                return Skip("nothing new")
            assert claimed.digest_date is not None
            mail = self._composer.digest(
                to=recipient, digest_date=claimed.digest_date, content=content
            )
            return Send(mail, recipient)
        except InvalidAddress as exc:
            MAIL_FAILURES.labels("invalid_address").inc()
            return Fail(str(exc))

    async def _send_batch(self, batch: Sequence[tuple[Claimed, Outcome]]) -> list[Outcome]:
        """Send the batch's mails over ``smtp_connections`` lanes; the outcome of each row.

        Sending stops early when the server is unavailable or the dispatcher stops: the mails
        not yet handed to the transport are released (back to pending, no attempt used).
        """
        outcomes = [outcome for _, outcome in batch]
        unsent = deque(i for i, outcome in enumerate(outcomes) if isinstance(outcome, Send))
        halted: list[Release] = []

        async def lane() -> None:
            while unsent and not halted and not self._stopping:
                i = unsent.popleft()
                claimed, send = batch[i]
                assert isinstance(send, Send)
                outcomes[i] = outcome = await self._send(claimed, send)
                if isinstance(outcome, Release):
                    halted.append(outcome)

        lanes = min(self._settings.smtp_connections, len(unsent))
        await asyncio.gather(*(lane() for _ in range(lanes)))
        reason = halted[0].reason if halted else "the dispatcher stopped before sending it"
        for i in unsent:
            outcomes[i] = Release(f"not sent: {reason}")
        return outcomes

    async def _settle(
        self, batch: Sequence[tuple[Claimed, Outcome]], outcomes: Sequence[Outcome]
    ) -> None:
        """Record the batch's outcomes in one transaction."""
        settlements = [settlement_of(outcome) for outcome in outcomes]
        bounces = [
            (claimed.user_id, outcome.email)
            for (claimed, _), outcome in zip(batch, outcomes, strict=True)
            if isinstance(outcome, Bounce)
        ]
        async with self._session_maker() as session, session.begin():
            await session.execute(
                _SETTLE,
                {
                    "ids": [claimed.delivery_id for claimed, _ in batch],
                    "statuses": [s.status for s in settlements],
                    "errors": [s.error and s.error[:_ERROR_LIMIT] for s in settlements],
                    "refunds": [s.refund for s in settlements],
                    "next_attempts": [s.next_attempt_at for s in settlements],
                    "sent_at": [s.sent_at for s in settlements],
                },
            )
            if bounces:
                await session.execute(
                    _MARK_BOUNCING,
                    {
                        "user_ids": [user_id for user_id, _ in bounces],
                        "emails": [email for _, email in bounces],
                    },
                )

    async def _send(self, claimed: Claimed, send: Send) -> Outcome:
        await self._limiter.acquire()
        try:
            await self._transport.send(send.mail)
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
        return Sent(datetime.now(UTC))
