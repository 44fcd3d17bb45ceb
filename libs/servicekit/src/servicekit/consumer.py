"""Consuming events: inbox for exactly-once effects, retries with delay, dead letters.

For each message the consumer opens one transaction, records the event id in the inbox and runs
the handler in it; it acks only after that transaction commits. A redelivered or duplicated event
finds its id in the inbox and is acked without running the handler again. A handler that raises
sends the message to the next delay queue, and after the last attempt to ``<queue>.dlq``. A
message that cannot be decoded (bad JSON, unknown event version, invalid payload) can never
succeed, so it goes to the dead-letter queue at once, with the reason.
"""

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts import Envelope, Event, UnknownEventError, parse_event
from servicekit.bus import (
    Bus,
    RetryPolicy,
    dead_letter_queue_name,
    retry_queue_name,
)
from servicekit.db import SessionMaker
from servicekit.logs import log_context
from servicekit.metrics import (
    CONSUMERS_ATTACHED,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_RETRIED,
    HANDLER_SECONDS,
)
from servicekit.outbox import add_event
from servicekit.tables import InboxMessage
from servicekit.tracing import TRACER, extract_context, record_failure

logger = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-attempt"
REASON_HEADER = "x-dead-letter-reason"
ORIGINAL_QUEUE_HEADER = "x-original-queue"

E = TypeVar("E", bound=Event)


@dataclass
class EventContext:
    """What a handler gets besides the typed event: the transaction and the envelope."""

    session: AsyncSession
    envelope: Envelope
    producer: str

    async def publish(self, event: Event, **kwargs: Any) -> Envelope:
        """Announce a follow-up event through the outbox, in this handler's transaction."""
        return await add_event(
            self.session,
            event,
            producer=self.producer,
            correlation_id=self.envelope.correlation_id,
            causation_id=str(self.envelope.event_id),
            **kwargs,
        )


Handler = Callable[[EventContext, Any], Awaitable[None]]


class Consumer:
    """One durable queue of one service, with a handler per event type."""

    def __init__(
        self,
        *,
        queue: str,
        producer: str,
        session_maker: SessionMaker,
        retry_policy: RetryPolicy | None = None,
        prefetch: int = 32,
    ) -> None:
        self.queue = queue
        self._producer = producer
        self._session_maker = session_maker
        self.retry_policy = retry_policy or RetryPolicy()
        self._prefetch = prefetch
        self._handlers: dict[str, Handler] = {}
        self._bus: Bus | None = None
        self._channel: AbstractChannel | None = None
        self._amqp_queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    def on(self, model: type[E], handler: Callable[[EventContext, E], Awaitable[None]]) -> None:
        """Handle events of ``model``'s type (all versions this build knows)."""
        self._handlers[model.event_type] = handler

    @property
    def routing_keys(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def is_attached(self) -> bool:
        return (
            self._consumer_tag is not None
            and self._bus is not None
            and self._bus.is_connected
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def start(self, bus: Bus) -> None:
        self._bus = bus
        self._channel = await bus.connection.channel()
        await self._channel.set_qos(prefetch_count=self._prefetch)
        self._amqp_queue = await bus.declare_consumer_queue(
            self._channel, self.queue, self.routing_keys, self.retry_policy
        )
        self._consumer_tag = await self._amqp_queue.consume(self._on_message)
        CONSUMERS_ATTACHED.labels(self.queue).set(1)

    async def stop(self, *, grace: float = 30.0) -> None:
        """Stop taking messages, let those in flight finish, then close the channel."""
        if self._amqp_queue is not None and self._consumer_tag is not None:
            try:
                await self._amqp_queue.cancel(self._consumer_tag)
            except Exception:
                logger.warning("cancelling consumer %s failed", self.queue, exc_info=True)
        self._consumer_tag = None
        CONSUMERS_ATTACHED.labels(self.queue).set(0)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=grace)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self.process(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def process(self, message: AbstractIncomingMessage) -> None:
        """Apply one message exactly once, then ack; on failure retry or dead-letter it.

        It runs in a consumer span continuing the producer's trace (W3C headers on the message);
        the event id and correlation id go into every log line written meanwhile.
        """
        attributes = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": self.queue,
            "messaging.message.id": message.message_id,
            "messaging.message.conversation_id": message.correlation_id,
            "messaging.rabbitmq.attempt": attempts_of(message) + 1,
        }
        with (
            TRACER.start_as_current_span(
                f"process {message.type or self.queue}",
                context=extract_context(message.headers),
                kind=SpanKind.CONSUMER,
                attributes={k: v for k, v in attributes.items() if v is not None},
            ),
            log_context(
                event_id=message.message_id,
                correlation_id=message.correlation_id,
                event_type=message.type,
                queue=self.queue,
            ),
        ):
            await self._process_in_context(message)

    async def _process_in_context(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = Envelope.model_validate_json(message.body)
            event = parse_event(envelope)
            handler = self._handlers[envelope.type]
        except (ValidationError, UnknownEventError, KeyError) as exc:
            record_failure(exc)
            await self._dead_letter(message, f"undecodable message: {exc}")
            return
        started = time.perf_counter()
        try:
            outcome = await self._apply(envelope, event, handler)
        except Exception as exc:
            record_failure(exc)
            logger.warning("handler for %s on %s failed", envelope.type, self.queue, exc_info=True)
            await self._retry_or_dead_letter(message, exc)
            return
        HANDLER_SECONDS.labels(self.queue, envelope.type).observe(time.perf_counter() - started)
        EVENTS_CONSUMED.labels(self.queue, envelope.type, outcome).inc()
        await _settle(message.ack())

    async def _apply(self, envelope: Envelope, event: Event, handler: Handler) -> str:
        async with self._session_maker() as session, session.begin():
            claimed = await session.scalar(
                insert(InboxMessage)
                .values(consumer=self.queue, event_id=envelope.event_id, event_type=envelope.type)
                .on_conflict_do_nothing()
                .returning(col(InboxMessage.event_id))
            )
            if claimed is None:
                return "duplicate"
            await handler(EventContext(session, envelope, self._producer), event)
        return "handled"

    async def _retry_or_dead_letter(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        attempts = attempts_of(message) + 1
        policy = self.retry_policy
        if attempts >= policy.max_attempts:
            reason = f"failed {attempts} attempts; last error: {_describe(exc)}"
            await self._dead_letter(message, reason, attempts=attempts)
            return
        step = min(attempts - 1, len(policy.delays) - 1)
        await self._forward(message, retry_queue_name(self.queue, step), {ATTEMPT_HEADER: attempts})
        EVENTS_RETRIED.labels(self.queue).inc()

    async def _dead_letter(
        self, message: AbstractIncomingMessage, reason: str, *, attempts: int | None = None
    ) -> None:
        logger.error(
            "dead-lettering message %s from %s: %s", message.message_id, self.queue, reason
        )
        extra = {
            REASON_HEADER: reason[:2000],
            ORIGINAL_QUEUE_HEADER: self.queue,
            "x-dead-lettered-at": datetime.now(UTC).isoformat(),
            ATTEMPT_HEADER: attempts if attempts is not None else attempts_of(message),
        }
        await self._forward(message, dead_letter_queue_name(self.queue), extra)
        EVENTS_DEAD_LETTERED.labels(self.queue).inc()

    async def _forward(
        self, message: AbstractIncomingMessage, queue: str, extra_headers: dict[str, Any]
    ) -> None:
        """Copy the message to another queue with confirms, then ack the original."""
        assert self._bus is not None
        try:
            await self._bus.publish_to_queue(queue, copy_message(message, extra_headers))
        except Exception:
            logger.warning("could not forward to %s; message stays queued", queue, exc_info=True)
            await _settle(message.nack(requeue=True))
            return
        await _settle(message.ack())


def copy_message(
    message: AbstractIncomingMessage, extra_headers: dict[str, Any]
) -> aio_pika.Message:
    """The same body and properties with some headers added or replaced."""
    return aio_pika.Message(
        body=message.body,
        headers={**(message.headers or {}), **extra_headers},
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


def attempts_of(message: AbstractIncomingMessage) -> int:
    """How many times handling this message has failed so far."""
    value = (message.headers or {}).get(ATTEMPT_HEADER, 0)
    return value if isinstance(value, int) else 0


def _describe(exc: Exception) -> str:
    return "".join(traceback.format_exception_only(exc)).strip()


async def _settle(action: Awaitable[None]) -> None:
    """Ack or nack; if the channel died meanwhile, the broker redelivers and the inbox dedups."""
    try:
        await action
    except Exception:
        logger.warning("ack/nack failed (channel closed?); the message will be redelivered")
