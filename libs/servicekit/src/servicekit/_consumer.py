"""Consuming events: inbox for exactly-once effects, retries with delay, dead letters.

For each message the consumer records the event id in the inbox and runs the handler in the same
transaction; it acks only after that transaction commits. A redelivered or duplicated event
finds its id in the inbox and is acked without running the handler again. A handler that raises
sends the message to the next delay queue, and after the last attempt to ``<queue>.dlq``
(``servicekit._redelivery``). A message that cannot be decoded (bad JSON, unknown event version,
invalid payload) can never succeed, so it goes to the dead-letter queue at once, with the reason.

Batches (``batch_size``): under load, the messages already delivered and waiting (never more:
the consumer does not wait for a batch to fill) share one transaction: one multi-row inbox
insert, the handlers one after another in the same session, one commit, then one
``basic.ack(multiple=True)`` for the batch when no earlier delivery is still unsettled, else an
ack for each (``servicekit._acks``). A commit per message is what limited a consumer to a few
hundred events a second. If anything in a batch fails, the batch is rolled back and its messages
are applied again one transaction each, so a poison message takes the normal retry and
dead-letter path and the others commit. At most
``prefetch // batch_size`` batches run at once, so ``prefetch`` still bounds the messages held.
The default, 1, keeps one transaction per message and ``prefetch`` handlers running side by
side: batching suits short database-only handlers; a handler that does slow I/O (rendering,
uploads) would run one after another in a batch, and its work would be redone if a batch-mate
failed. Services pass their ``consumer_batch_size`` setting (16 unless a service says otherwise;
media, whose handlers render and upload, keeps 1).
"""

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope, Event, UnknownEventError, parse_event
from servicekit._acks import Acknowledger
from servicekit._bus import Bus, RetryPolicy
from servicekit._db import SessionMaker
from servicekit._logs import log_context
from servicekit._metrics import CONSUMERS_ATTACHED, EVENTS_CONSUMED, HANDLER_SECONDS
from servicekit._outbox import add_event
from servicekit._redelivery import Redelivery, attempts_of, describe_error
from servicekit._tables import InboxMessage
from servicekit._topology import declare_topology
from servicekit._tracing import TRACER, extract_context, record_failure
from servicekit.defaults import DEFAULT_PREFETCH

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)

#: What decoding a message that can never succeed raises: bad JSON or payload, unknown version,
#: or an event type this consumer has no handler for.
UNDECODABLE = (ValidationError, UnknownEventError, KeyError)


R = TypeVar("R")


class Resources:
    """What a worker opened for its handlers (settings, an image pipeline...), found by type."""

    def __init__(self, objects: Sequence[object] = ()) -> None:
        self._objects = tuple(objects)

    def get(self, kind: type[R]) -> R:
        for candidate in self._objects:
            if isinstance(candidate, kind):
                return candidate
        raise LookupError(f"the worker opened no {kind.__name__}")


@dataclass
class EventContext:
    """What a handler gets besides the typed event: the transaction, the envelope, and the
    worker's resources."""

    session: AsyncSession
    envelope: Envelope
    producer: str
    resources: Resources = field(default_factory=Resources)

    def resource(self, kind: type[R]) -> R:
        """The worker's ``kind`` object (``servicekit.service``: the spec's resources)."""
        return self.resources.get(kind)

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


@dataclass(frozen=True, slots=True)
class Delivery:
    """A decoded message and the handler it goes to."""

    message: AbstractIncomingMessage
    envelope: Envelope
    event: Event
    handler: Handler


class Consumer:
    """One durable queue of one service, with a handler per event type."""

    def __init__(
        self,
        *,
        queue: str,
        producer: str,
        session_maker: SessionMaker,
        retry_policy: RetryPolicy | None = None,
        prefetch: int = DEFAULT_PREFETCH,
        batch_size: int = 1,
        resources: Resources | None = None,
    ) -> None:
        if prefetch < 1 or batch_size < 1:
            raise ValueError("prefetch and batch_size must be at least 1")
        self.queue = queue
        self._producer = producer
        self._resources = resources or Resources()
        self._session_maker = session_maker
        self.retry_policy = retry_policy or RetryPolicy()
        self._prefetch = prefetch
        self._batch_size = batch_size
        self._batches_at_once = max(1, prefetch // batch_size)
        self._handlers: dict[str, Handler] = {}
        self._bus: Bus | None = None
        self._channel: AbstractChannel | None = None
        self._amqp_queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._waiting: deque[AbstractIncomingMessage] = deque()
        self._in_flight: set[asyncio.Task[None]] = set()
        #: Acks and nacks go through it: one ack for a committed batch when that is safe.
        self.acks = Acknowledger()

    def on(self, model: type[E], handler: Callable[[EventContext, E], Awaitable[None]]) -> None:
        """Handle events of ``model``'s type (all versions this build knows)."""
        self._handlers[model.event_type] = handler

    @property
    def routing_keys(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def session_maker(self) -> SessionMaker:
        return self._session_maker

    async def apply(self, envelope: Envelope, *, session: AsyncSession) -> bool:
        """Apply one decoded event in ``session``'s transaction, as for one message: claim its
        id in the inbox, then run its handler. False if the inbox had it (the handler did not
        run). How tests deliver an event through the real handlers without a broker."""
        handler = self._handlers[envelope.type]
        if envelope.event_id not in await _claim(session, self.queue, [envelope]):
            return False
        await self._run_handler(session, envelope, parse_event(envelope), handler)
        return True

    async def _run_handler(
        self, session: AsyncSession, envelope: Envelope, event: Event, handler: Handler
    ) -> None:
        await handler(EventContext(session, envelope, self._producer, self._resources), event)

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
        await declare_topology(
            bus.connection, bus.exchange_name, self.queue, self.routing_keys, self.retry_policy
        )
        self._amqp_queue = await self._channel.get_queue(self.queue, ensure=True)
        self._consumer_tag = await self._amqp_queue.consume(self._on_message)
        CONSUMERS_ATTACHED.labels(self.queue).set(1)

    async def stop(self, *, grace: float = 30.0) -> None:
        """Stop taking messages, let those delivered finish, then close the channel."""
        if self._amqp_queue is not None and self._consumer_tag is not None:
            try:
                await self._amqp_queue.cancel(self._consumer_tag)
            except Exception:
                logger.warning("cancelling consumer %s failed", self.queue, exc_info=True)
        self._consumer_tag = None
        CONSUMERS_ATTACHED.labels(self.queue).set(0)
        deadline = time.monotonic() + grace
        # A finishing batch starts the next one from the waiting messages: wait for those too.
        while self._in_flight and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self._in_flight), timeout=left)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.acks.delivered(message)
        self._waiting.append(message)
        self._start_batches()

    def _start_batches(self) -> None:
        while self._waiting and len(self._in_flight) < self._batches_at_once:
            size = min(self._batch_size, len(self._waiting))
            batch = [self._waiting.popleft() for _ in range(size)]
            task = asyncio.create_task(self.process_batch(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._start_batches()

    async def process_batch(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        """Apply messages in one transaction, then ack them; if that fails, one at a time."""
        if len(messages) == 1:
            await self.process(messages[0])
            return
        deliveries = await self._decode_batch(messages)
        if not deliveries:
            return
        try:
            outcomes = await self._apply(deliveries, span_each=True)
        except Exception as exc:
            logger.info(
                "batch of %d on %s failed (%s); applying its events one at a time",
                len(deliveries),
                self.queue,
                describe_error(exc),
            )
            for delivery in deliveries:
                with self._message_scope(delivery.message):
                    await self._apply_one(delivery)
            return
        counts = Counter(zip((d.envelope.type for d in deliveries), outcomes, strict=True))
        for (event_type, outcome), count in counts.items():
            EVENTS_CONSUMED.labels(self.queue, event_type, outcome).inc(count)
        await self.acks.ack_committed([delivery.message for delivery in deliveries])

    async def process(self, message: AbstractIncomingMessage) -> None:
        """Apply one message exactly once, then ack; on failure retry or dead-letter it.

        It runs in a consumer span continuing the producer's trace (W3C headers on the message);
        the event id and correlation id go into every log line written meanwhile.
        """
        with self._message_scope(message):
            try:
                delivery = self._decode(message)
            except UNDECODABLE as exc:
                await self._park_undecodable(message, exc)
                return
            await self._apply_one(delivery)

    async def _apply_one(self, delivery: Delivery) -> None:
        """Apply one decoded message in its own transaction, inside its message scope."""
        message = delivery.message
        started = time.perf_counter()
        try:
            [outcome] = await self._apply([delivery], span_each=False)
        except Exception as exc:
            record_failure(exc)
            logger.warning("handler for %s on %s failed", message.type, self.queue, exc_info=True)
            await self._redelivery().retry_or_dead_letter(message, exc, self.retry_policy)
            return
        elapsed = time.perf_counter() - started
        HANDLER_SECONDS.labels(self.queue, delivery.envelope.type).observe(elapsed)
        EVENTS_CONSUMED.labels(self.queue, delivery.envelope.type, outcome).inc()
        await self.acks.ack(message)

    @contextmanager
    def _message_scope(self, message: AbstractIncomingMessage) -> Iterator[None]:
        """The message's consumer span (continuing the producer's trace) and log fields."""
        with (
            self._span(message),
            log_context(
                event_id=message.message_id,
                correlation_id=message.correlation_id,
                event_type=message.type,
                queue=self.queue,
            ),
        ):
            yield

    def _span(self, message: AbstractIncomingMessage) -> AbstractContextManager[object]:
        if not isinstance(trace.get_tracer_provider(), TracerProvider):
            # Tracing off: a span would record nothing; carrying the producer's trace context
            # on (to log lines and the events the handler writes) is all it would do, and
            # attaching that context does the same for a fraction of the CPU.
            return _attached(extract_context(message.headers))
        attributes = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": self.queue,
            "messaging.message.id": message.message_id,
            "messaging.message.conversation_id": message.correlation_id,
            "messaging.rabbitmq.attempt": attempts_of(message) + 1,
        }
        return TRACER.start_as_current_span(
            f"process {message.type or self.queue}",
            context=extract_context(message.headers),
            kind=SpanKind.CONSUMER,
            attributes={k: v for k, v in attributes.items() if v is not None},
        )

    def _decode(self, message: AbstractIncomingMessage) -> Delivery:
        """The decoded message; raises one of ``UNDECODABLE`` if it can never succeed."""
        envelope = Envelope.model_validate_json(message.body)
        return Delivery(message, envelope, parse_event(envelope), self._handlers[envelope.type])

    async def _decode_batch(self, messages: Sequence[AbstractIncomingMessage]) -> list[Delivery]:
        """The decodable messages; the others are dead-lettered, each in its own span."""
        deliveries = []
        for message in messages:
            try:
                deliveries.append(self._decode(message))
            except UNDECODABLE as exc:
                with self._message_scope(message):
                    await self._park_undecodable(message, exc)
        return deliveries

    def _redelivery(self) -> Redelivery:
        assert self._bus is not None, "the consumer has not been started"
        return Redelivery(self.queue, self._bus, self.acks)

    async def _park_undecodable(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        record_failure(exc)
        await self._redelivery().dead_letter(message, f"undecodable message: {exc}")

    async def _apply(self, deliveries: Sequence[Delivery], *, span_each: bool) -> list[str]:
        """Claim the events in the inbox and run the handlers of new ones; commit; outcomes."""
        outcomes: list[str] = []
        timings: list[tuple[str, float]] = []
        async with self._session_maker() as session, session.begin():
            unseen = await _claim(session, self.queue, [d.envelope for d in deliveries])
            for delivery in deliveries:
                event_id = delivery.envelope.event_id
                if event_id not in unseen:  # applied before, or earlier in this batch
                    outcomes.append("duplicate")
                    continue
                unseen.discard(event_id)
                started = time.perf_counter()
                with self._message_scope(delivery.message) if span_each else nullcontext():
                    await self._run_handler(
                        session, delivery.envelope, delivery.event, delivery.handler
                    )
                timings.append((delivery.envelope.type, time.perf_counter() - started))
                outcomes.append("handled")
        if span_each:  # a single message's time is observed by ``process``, commit included
            for event_type, seconds in timings:
                HANDLER_SECONDS.labels(self.queue, event_type).observe(seconds)
        return outcomes


#: One statement of the same text whatever the batch size, so it is compiled and prepared once.
_CLAIM = text(
    f"INSERT INTO {InboxMessage.__tablename__} (consumer, event_id, event_type)"
    " SELECT :consumer, unnest(CAST(:event_ids AS uuid[])), unnest(CAST(:event_types AS text[]))"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)


async def _claim(
    session: AsyncSession, queue: str, envelopes: Sequence[Envelope]
) -> set[uuid.UUID]:
    """Insert the events' inbox rows; returns the ids not seen before (one round trip)."""
    claimed = await session.scalars(
        _CLAIM,
        {
            "consumer": queue,
            "event_ids": [e.event_id for e in envelopes],
            "event_types": [e.type for e in envelopes],
        },
    )
    return set(claimed)


@contextmanager
def _attached(trace_context: context.Context) -> Iterator[None]:
    token = context.attach(trace_context)
    try:
        yield
    finally:
        context.detach(token)
