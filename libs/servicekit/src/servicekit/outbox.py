"""Transactional outbox: an event is stored with the state change, then relayed to the broker.

``add_event`` writes the row in the caller's transaction and a ``NOTIFY`` that PostgreSQL
delivers only if that transaction commits. ``OutboxRelay`` wakes on the notification (or polls),
locks pending rows with ``FOR UPDATE SKIP LOCKED`` so several relays never publish the same row,
publishes them with confirms and deletes them in the same transaction that locked them. A crash
after publishing but before commit republishes the batch: consumers' inboxes make that harmless.
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
from sqlalchemy import Select, Table, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import EXCHANGE_NAME, Envelope, Event, make_envelope
from servicekit.bus import Publisher
from servicekit.db import SessionMaker
from servicekit.logs import request_id_var
from servicekit.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE
from servicekit.tables import OutboxMessage, utcnow
from servicekit.tracing import TRACER, inject_headers

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "outbox_pending"
_NOTIFIED_IN = "servicekit.outbox.notified_in"
_OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]


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

    The correlation id defaults to the id of the HTTP request being served. The row's headers
    carry the trace context of a producer span started here, so the consumer continues the trace.
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
        correlation_id=correlation_id or request_id_var.get(),
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


class OutboxRelay:
    """Publishes committed outbox rows; safe to run in several replicas at once."""

    def __init__(
        self,
        session_maker: SessionMaker,
        publisher: Publisher,
        *,
        listen_url: str | None,
        batch_size: int = 200,
        poll_interval: float = 1.0,
    ) -> None:
        self._session_maker = session_maker
        self._publisher = publisher
        self._listen_url = listen_url
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self._backlog_read_at = -math.inf

    async def relay_once(self) -> int:
        """Publish one batch of pending rows; returns how many were published."""
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
                return 0
            envelopes = [Envelope.model_validate(row.envelope) for row in rows]
            await self._publisher.publish_many(
                [(env, dict(row.headers)) for env, row in zip(envelopes, rows, strict=True)]
            )
            await session.execute(
                delete(OutboxMessage).where(
                    OutboxMessage.event_id.in_([row.event_id for row in rows])  # type: ignore[attr-defined]
                )
            )
        return len(rows)

    async def drain(self) -> int:
        """Publish until nothing is pending; returns the total.

        A batch shorter than ``batch_size`` found every unlocked row: no need to ask again
        (a row committed since then notifies the relay, and the poll catches anything else).
        """
        total = 0
        while True:
            published = await self.relay_once()
            total += published
            if published < self._batch_size:
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
        OUTBOX_BACKLOG.set(count)
        OUTBOX_OLDEST_AGE.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0)
