"""Transactional outbox: an event is stored with the state change, then relayed to the broker.

``add_event`` writes the row in the caller's transaction and a ``NOTIFY`` that PostgreSQL
delivers only if that transaction commits. ``OutboxRelay`` wakes on the notification (or polls),
locks pending rows with ``FOR UPDATE SKIP LOCKED`` so several relays never publish the same row,
publishes them with confirms and deletes them in the same transaction that locked them. A crash
after publishing but before commit republishes the batch: consumers' inboxes make that harmless.

Publishing has one outcome per row (issue 15): confirmed rows are deleted, and rows that can
never be published (an invalid envelope, an encoding or size the broker cannot take, a message
the broker refused ``refusals_before_quarantine`` passes in a row) move to ``outbox_quarantine``
with their reason, in the same transaction, before the relay reports the rows that failed for a
passing reason (those stay and are tried again). So one poison row neither blocks the outbox nor
makes the relay re-send what the broker already confirmed. ``outbox-quarantine`` lists, shows and
releases quarantined rows; ``outbox_quarantined`` and the ``OutboxQuarantineNotEmpty`` alert
show them.
"""

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy import Select, Table, delete, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import EXCHANGE_NAME, Envelope, Event, make_envelope
from servicekit._bus import Publisher, PublishFailure
from servicekit._db import SessionMaker
from servicekit._logs import request_id_var
from servicekit._metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_QUARANTINED,
    OUTBOX_QUARANTINED_TOTAL,
)
from servicekit._request_ids import accepted_request_id
from servicekit._tables import OutboxMessage, QuarantinedEvent, utcnow
from servicekit._tracing import TRACER, inject_headers
from servicekit.defaults import DEFAULT_OUTBOX_BATCH_SIZE, DEFAULT_OUTBOX_POLL_INTERVAL

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "outbox_pending"
_NOTIFIED_IN = "servicekit._outbox.notified_in"
_OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
_QUARANTINE: Table = QuarantinedEvent.__table__  # type: ignore[attr-defined]


async def add_event(
    session: AsyncSession,
    event: Event,
    *,
    producer: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    event_id: uuid.UUID | None = None,
    headers: dict[str, str] | None = None,
) -> Envelope:
    """Record ``event`` in the caller's transaction; it is published after commit.

    The correlation id defaults to the id of the HTTP request being served; one that is no valid
    request id (``servicekit._request_ids``) is replaced: a client's bytes never reach the broker.
    The row's headers carry the trace context of a producer span started here, so the consumer
    continues the trace.
    """
    envelope, row = _envelope_and_row(
        event,
        producer=producer,
        correlation_id=correlation_id,
        causation_id=causation_id,
        event_id=event_id,
        headers=headers,
    )
    await _insert_row(session, row)
    return envelope


def outbox_row(event: Event, *, producer: str) -> dict[str, Any]:
    """The outbox row of ``event``, for a caller that inserts it in a statement of its own.

    A use case whose event carries values computed by its own statement (a new aggregate)
    inserts this row in that statement, filling those values in SQL, so it makes one round trip
    instead of two while it holds its locks. It must also send ``NOTIFY NOTIFY_CHANNEL`` in
    that statement: ``add_event`` does both for everyone else.
    """
    return _envelope_and_row(event, producer=producer)[1]


def _envelope_and_row(
    event: Event,
    *,
    producer: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    event_id: uuid.UUID | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[Envelope, dict[str, Any]]:
    envelope = make_envelope(
        event,
        producer=producer,
        correlation_id=accepted_request_id(correlation_id or request_id_var.get()),
        causation_id=causation_id,
        event_id=event_id,
    )
    with TRACER.start_as_current_span(
        f"create {envelope.type}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "create",
            "messaging.destination.name": EXCHANGE_NAME,
            "messaging.rabbitmq.destination.routing_key": envelope.routing_key,
            "messaging.message.id": str(envelope.event_id),
            "messaging.message.conversation_id": envelope.correlation_id,
        },
    ):
        trace_headers = inject_headers()
    row = {
        "event_id": envelope.event_id,
        "routing_key": envelope.routing_key,
        "envelope": envelope.model_dump(mode="json"),
        "headers": {**trace_headers, **(headers or {})},
        # Not the server's now() (the transaction's start, the same for all its rows): the relay
        # publishes in this order. Nor the model's default factory: that was half a row's cost.
        "created_at": utcnow(),
    }
    return envelope, row


async def _insert_row(session: AsyncSession, row: dict[str, Any]) -> None:
    """The first row of a transaction goes with its ``NOTIFY`` in one statement (one round trip).

    One ``NOTIFY`` wakes the relays for the whole transaction, so later rows of the same
    transaction are only added to the session: its flush inserts them together.
    """
    transaction = session.sync_session.get_transaction()
    if transaction is not None and session.info.get(_NOTIFIED_IN) is transaction:
        session.add(OutboxMessage(**row))
        return
    await session.execute(_insert_and_notify(row))
    # Read again: a session without a transaction has just begun one.
    session.info[_NOTIFIED_IN] = session.sync_session.get_transaction()


def _insert_and_notify(row: dict[str, Any]) -> Select[tuple[Any]]:
    inserted = insert(_OUTBOX).values(row).returning(_OUTBOX.c.event_id).cte("inserted")
    return select(func.pg_notify(NOTIFY_CHANNEL, "")).select_from(inserted)


class OutboxPublishFailed(Exception):
    """Some rows of a batch were not confirmed for a passing reason; they stay in the outbox."""

    def __init__(self, reasons: dict[uuid.UUID, str]) -> None:
        self.reasons = reasons
        first = next(iter(reasons.values()))
        super().__init__(f"{len(reasons)} outbox rows not published (first: {first})")


async def _delete_rows(session: AsyncSession, event_ids: Sequence[uuid.UUID]) -> None:
    if event_ids:
        await session.execute(delete(_OUTBOX).where(_OUTBOX.c.event_id.in_(event_ids)))


async def _quarantine_rows(session: AsyncSession, reasons: dict[uuid.UUID, str]) -> None:
    """Move rows from the outbox to the quarantine with their reasons (the caller's transaction)."""
    for event_id, reason in reasons.items():
        logger.error("outbox event %s quarantined: %s", event_id, reason)
        columns = ["event_id", "routing_key", "envelope", "headers", "created_at"]
        await session.execute(
            insert(_QUARANTINE).from_select(
                [*columns, "reason"],
                select(*(_OUTBOX.c[name] for name in columns), literal(reason)).where(
                    _OUTBOX.c.event_id == event_id
                ),
            )
        )
        OUTBOX_QUARANTINED_TOTAL.inc()
    await _delete_rows(session, list(reasons))


class OutboxRelay:
    """Publishes committed outbox rows; safe to run in several replicas at once."""

    def __init__(
        self,
        session_maker: SessionMaker,
        publisher: Publisher,
        *,
        listen_url: str | None,
        batch_size: int = DEFAULT_OUTBOX_BATCH_SIZE,
        poll_interval: float = DEFAULT_OUTBOX_POLL_INTERVAL,
        refusals_before_quarantine: int = 5,
    ) -> None:
        self._session_maker = session_maker
        self._publisher = publisher
        self._listen_url = listen_url
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self._backlog_read_at = -math.inf
        self._refusals_before_quarantine = refusals_before_quarantine
        #: Passes in a row the broker refused each row (kept in memory: a restart starts over).
        self._refusals: dict[uuid.UUID, int] = {}

    async def relay_once(self) -> int:
        """Publish one batch of pending rows; returns how many were published."""
        published, _ = await self._relay_batch()
        return published

    async def _relay_batch(self) -> tuple[int, int]:
        """One batch: confirmed rows deleted, poison rows quarantined, in one transaction.

        Returns (published, rows taken off the outbox). Rows that failed for a reason of the
        broker or connection stay; ``OutboxPublishFailed`` is raised once the others committed,
        so a failure never makes the relay send again what the broker already confirmed.
        """
        failed: dict[uuid.UUID, str] = {}
        async with self._session_maker() as session, session.begin():
            rows: Sequence[OutboxMessage] = (
                await session.scalars(
                    select(OutboxMessage)
                    .order_by(OutboxMessage.created_at)  # type: ignore[arg-type]
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0, 0
            poison: dict[uuid.UUID, str] = {}
            sendable: list[tuple[OutboxMessage, Envelope]] = []
            for row in rows:
                try:
                    sendable.append((row, Envelope.model_validate(row.envelope)))
                except ValidationError as exc:
                    poison[row.event_id] = f"invalid envelope: {exc}"
            outcomes = await self._publisher.publish_many(
                [(envelope, dict(row.headers)) for row, envelope in sendable]
            )
            confirmed: list[uuid.UUID] = []
            for (row, _), outcome in zip(sendable, outcomes, strict=True):
                if outcome is None:
                    confirmed.append(row.event_id)
                    self._refusals.pop(row.event_id, None)
                elif outcome.poison or self._refused_too_often(row.event_id, outcome):
                    poison[row.event_id] = outcome.reason
                else:
                    failed[row.event_id] = outcome.reason
            await _delete_rows(session, confirmed)
            await _quarantine_rows(session, poison)
        if failed:
            raise OutboxPublishFailed(failed)
        return len(confirmed), len(confirmed) + len(poison)

    def _refused_too_often(self, event_id: uuid.UUID, failure: PublishFailure) -> bool:
        """A message the broker refused on ``refusals_before_quarantine`` passes in a row."""
        if not failure.refused:
            return False
        self._refusals[event_id] = self._refusals.get(event_id, 0) + 1
        if self._refusals[event_id] < self._refusals_before_quarantine:
            return False
        del self._refusals[event_id]
        return True

    async def drain(self) -> int:
        """Publish until nothing is pending; returns the total.

        A batch shorter than ``batch_size`` found every unlocked row: no need to ask again
        (a row committed since then notifies the relay, and the poll catches anything else).
        """
        total = 0
        while True:
            published, taken = await self._relay_batch()
            total += published
            if taken < self._batch_size:
                return total

    async def run(self) -> None:
        """Relay forever: on every commit notification, and every poll interval regardless."""
        listener = asyncio.create_task(self._listen()) if self._listen_url else None
        try:
            while True:
                self._wakeup.clear()
                try:
                    await self.drain()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.warning("outbox relay failed; retrying", exc_info=True)
                # Also when publishing fails: a growing backlog is what the alert watches. Once
                # per poll interval, not per wake-up: a count per event at low load is waste.
                if time.monotonic() - self._backlog_read_at >= self._poll_interval:
                    await self.refresh_backlog_metrics()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)
        finally:
            if listener:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _listen(self) -> None:
        assert self._listen_url
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._listen_url, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    async for _ in conn.notifies():
                        self._wakeup.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("outbox listener lost its connection", exc_info=True)
                await asyncio.sleep(self._poll_interval)

    async def refresh_backlog_metrics(self) -> None:
        """Set the backlog gauges from the table; a database error leaves them as they were."""
        try:
            await self._read_backlog()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("could not read the outbox backlog", exc_info=True)

    async def _read_backlog(self) -> None:
        self._backlog_read_at = time.monotonic()
        async with self._session_maker() as session:
            count, oldest = (
                await session.execute(select(func.count(), func.min(OutboxMessage.created_at)))
            ).one()
            quarantined = await session.scalar(select(func.count()).select_from(_QUARANTINE))
        OUTBOX_BACKLOG.set(count)
        OUTBOX_QUARANTINED.set(quarantined or 0)
        OUTBOX_OLDEST_AGE.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0)
