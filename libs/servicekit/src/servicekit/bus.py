"""The connection to RabbitMQ: one topic exchange, publishing with confirms.

The queues of a consumer (``Q``, ``Q.retry.N``, ``Q.dlq``) and how they change between deploys
are ``servicekit.topology``'s; their names and the retry settings are here, where publishers
and consumers both find them.
"""

import asyncio
import logging
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
from aiormq import spec

from contracts import EXCHANGE_NAME, Envelope
from servicekit.metrics import EVENTS_PUBLISHED

logger = logging.getLogger(__name__)

HeaderValue = str | int | float | bool | None


class Publisher(Protocol):
    """What the outbox relay needs: publish a batch and return once every confirm arrived."""

    async def publish_many(
        self, items: Sequence[tuple[Envelope, Mapping[str, "HeaderValue"]]]
    ) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Delays (seconds) between attempts; after the last delay's attempt fails, dead-letter."""

    delays: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)
    #: Deliveries without an ack (consumer crashes) before the broker dead-letters by itself.
    delivery_limit: int = 20

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1


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
    ) -> None:
        self._url = amqp_url
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
    ) -> None:
        """Publish events persistently and wait for every confirm (raises on any failure)."""
        if self._exchange is None:
            raise RuntimeError("Bus.connect() was not called")
        exchange = self._exchange
        await asyncio.gather(
            *(
                exchange.publish(
                    envelope_message(envelope, headers),
                    routing_key=envelope.routing_key,
                    timeout=self.publish_timeout,
                )
                for envelope, headers in items
            )
        )
        for envelope, _ in items:
            EVENTS_PUBLISHED.labels(envelope.type).inc()

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
    """The AMQP message for an envelope: persistent, ``message_id`` = event id."""
    amqp_headers: dict[str, Any] = {k: v for k, v in headers.items() if v is not None}
    amqp_headers.setdefault("x-event-type", envelope.type)
    amqp_headers.setdefault("x-event-version", envelope.version)
    return aio_pika.Message(
        body=envelope.model_dump_json().encode(),
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=str(envelope.event_id),
        correlation_id=envelope.correlation_id,
        timestamp=envelope.occurred_at,
        type=envelope.type,
        app_id=envelope.producer,
        headers=amqp_headers,
    )
