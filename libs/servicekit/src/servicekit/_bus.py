"""The connection to RabbitMQ: one topic exchange, publishing with confirms.

The queues of a consumer (``Q``, ``Q.retry.N``, ``Q.dlq``) and how they change between deploys
are ``servicekit._topology``'s; their names are here, where publishers and consumers both find
them, and the retry policy (pure data, which the settings build) is ``servicekit._retries``'.
"""

import asyncio
import contextlib
import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractRobustConnection,
    DeliveryMode,
)
from aio_pika.exceptions import DeliveryError
from aiormq import spec
from pamqp import frame
from pamqp.header import ContentHeader

from contracts import EXCHANGE_NAME, Envelope
from servicekit._metrics import EVENTS_PUBLISHED
from servicekit._request_ids import is_valid_request_id

# Re-exported: publishers and consumers have always found the retry settings here.
from servicekit._retries import RetryPolicy as RetryPolicy
from servicekit.defaults import DEFAULT_MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

HeaderValue = str | int | float | bool | None


class UnpublishableMessage(Exception):
    """The message itself can never be published as it is (encoding, size)."""


@dataclass(frozen=True)
class PublishFailure:
    """Why one message of a batch was not confirmed.

    ``poison``: the message can never be published as it is; publishing it again cannot help.
    ``refused``: the broker nacked it, on a fresh channel too. Otherwise the connection or the
    broker failed, and a later attempt may succeed.
    """

    reason: str
    poison: bool = False
    refused: bool = False


class Publisher(Protocol):
    """What the outbox relay needs: publish a batch, one outcome per item (``None``: confirmed)."""

    async def publish_many(
        self, items: Sequence[tuple[Envelope, Mapping[str, "HeaderValue"]]]
    ) -> list[PublishFailure | None]: ...


def retry_queue_name(queue: str, step: int) -> str:
    return f"{queue}.retry.{step}"


def dead_letter_queue_name(queue: str) -> str:
    return f"{queue}.dlq"


class Bus:
    """A robust connection with a confirming publisher channel and the platform exchange."""

    def __init__(
        self,
        amqp_url: str,
        *,
        exchange_name: str = EXCHANGE_NAME,
        publish_timeout: float = 10.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._url = amqp_url
        self.max_message_bytes = max_message_bytes
        self._exchange_name = exchange_name
        self.publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def connect(self, *, timeout: float = 30.0) -> None:
        self._connection = await aio_pika.connect_robust(self._url, timeout=timeout)
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await self._channel.declare_exchange(
            self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = self._exchange = None

    @property
    def is_connected(self) -> bool:
        """True while the broker connection is up (False while the robust one reconnects)."""
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._connection.connected.is_set()
            and self._channel is not None
            and not self._channel.is_closed
        )

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("Bus.connect() was not called")
        return self._connection

    @property
    def exchange_name(self) -> str:
        return self._exchange_name

    async def publish_many(
        self, items: Sequence[tuple[Envelope, Mapping[str, HeaderValue]]]
    ) -> list[PublishFailure | None]:
        """Publish events persistently; one outcome per item, ``None`` once the broker confirmed.

        A message that cannot be encoded or is too big fails alone, as ``poison``, without being
        sent. Messages the broker refuses (nacks) are sent once more on a fresh channel: after a
        quorum queue's leader was killed, a channel can nack every publish until that node
        returns, while a new one is served at once (``NOTES.md``, RabbitMQ 3.10).
        """
        outcomes: list[PublishFailure | None] = [None] * len(items)
        pending: dict[int, tuple[aio_pika.Message, str]] = {}
        for index, (envelope, headers) in enumerate(items):
            try:
                pending[index] = (self._checked_message(envelope, headers), envelope.routing_key)
            except UnpublishableMessage as exc:
                outcomes[index] = PublishFailure(str(exc), poison=True)
        for attempt in range(2):
            refused = await self._publish_pending(pending, outcomes)
            if not refused or attempt == 1:
                break
            logger.warning("broker refused %d messages; retrying on a new channel", len(refused))
            try:
                await self._replace_channel()
            except Exception:
                # The outcomes so far stand: raising would hide the confirms already received.
                logger.warning("could not open a new publishing channel", exc_info=True)
                break
            pending = refused
        for (envelope, _), outcome in zip(items, outcomes, strict=True):
            if outcome is None:
                EVENTS_PUBLISHED.labels(envelope.type).inc()
        return outcomes

    def _checked_message(
        self, envelope: Envelope, headers: Mapping[str, HeaderValue]
    ) -> aio_pika.Message:
        """The message, encoded once here so that a bad one never reaches the channel."""
        try:
            message = envelope_message(envelope, headers)
            frame.marshal(ContentHeader(properties=message.properties, body_size=0), 1)
        except (TypeError, ValueError, UnicodeError, struct.error) as exc:
            raise UnpublishableMessage(f"cannot encode: {type(exc).__name__}: {exc}") from exc
        if len(message.body) > self.max_message_bytes:
            raise UnpublishableMessage(
                f"{len(message.body)} bytes, more than the {self.max_message_bytes} allowed"
            )
        return message

    async def _publish_pending(
        self,
        pending: Mapping[int, tuple[aio_pika.Message, str]],
        outcomes: list[PublishFailure | None],
    ) -> dict[int, tuple[aio_pika.Message, str]]:
        """Publish ``pending`` at once; record outcomes; return what the broker nacked."""
        if self._exchange is None:
            raise RuntimeError("Bus.connect() was not called")
        exchange = self._exchange
        results = await asyncio.gather(
            *(
                exchange.publish(message, routing_key=key, timeout=self.publish_timeout)
                for message, key in pending.values()
            ),
            return_exceptions=True,
        )
        refused: dict[int, tuple[aio_pika.Message, str]] = {}
        for (index, item), result in zip(pending.items(), results, strict=True):
            if isinstance(result, DeliveryError):
                refused[index] = item
                outcomes[index] = PublishFailure("refused by the broker (nack)", refused=True)
            elif isinstance(result, asyncio.CancelledError):
                raise result
            elif isinstance(result, BaseException):
                reason = f"{type(result).__name__}: {result}"
                outcomes[index] = PublishFailure(reason)
            else:
                outcomes[index] = None
        return refused

    async def _replace_channel(self) -> None:
        """A new confirming channel (and exchange) for publishing; the old one is closed."""
        old = self._channel
        channel = await self.connection.channel(publisher_confirms=True)
        self._exchange = await channel.declare_exchange(
            self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._channel = channel
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()

    async def publish_to_queue(self, queue: str, message: aio_pika.Message) -> None:
        """Publish straight to one queue through the default exchange (retries, dead letters)."""
        if self._channel is None:
            raise RuntimeError("Bus.connect() was not called")
        await send_to_queue(self._channel, queue, message, timeout=self.publish_timeout)


class UnroutableError(Exception):
    """The broker confirmed a message it could not route (its queue does not exist)."""


async def send_to_queue(
    channel: AbstractChannel, queue: str, message: aio_pika.Message, *, timeout: float
) -> None:
    """Publish to one queue through the default exchange; return once the broker confirmed it.

    ``channel`` must confirm publishes. The message is ``mandatory``: one the broker cannot
    route (the queue is missing, e.g. being rebuilt by ``migrate``) is returned and raises
    ``UnroutableError`` instead of counting as sent, so the caller keeps its original.
    """
    confirmation = await channel.default_exchange.publish(
        message, routing_key=queue, mandatory=True, timeout=timeout
    )
    if not isinstance(confirmation, spec.Basic.Ack):
        raise UnroutableError(f"the broker could not route a message to queue {queue!r}")


def envelope_message(envelope: Envelope, headers: Mapping[str, HeaderValue]) -> aio_pika.Message:
    """The AMQP message for an envelope: persistent, ``message_id`` = event id.

    The correlation id came from a client once: it becomes the AMQP property only if it is a
    valid request id (the envelope in the body keeps it either way).
    """
    amqp_headers: dict[str, Any] = {k: v for k, v in headers.items() if v is not None}
    amqp_headers.setdefault("x-event-type", envelope.type)
    amqp_headers.setdefault("x-event-version", envelope.version)
    return aio_pika.Message(
        body=envelope.model_dump_json().encode(),
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=str(envelope.event_id),
        correlation_id=(
            envelope.correlation_id if is_valid_request_id(envelope.correlation_id) else None
        ),
        timestamp=envelope.occurred_at,
        type=envelope.type,
        app_id=envelope.producer,
        headers=amqp_headers,
    )
