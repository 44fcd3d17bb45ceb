"""Where a message goes when it cannot be applied: the next delay queue, or ``<queue>.dlq``.

The message is copied there with confirms and only then acked; if the copy cannot be published
(or cannot be routed: ``mandatory``), it is nacked back to its queue and tried again later. A
retry carries its delay as its own expiration: the delay queue dead-letters it back when it
expires (``servicekit._topology`` says why the delay is not the queue's). Headers say how many
attempts failed and, in the dead-letter queue, why and from which queue
(``servicekit.dead_letters`` reads them).
"""

import logging
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from servicekit._acks import Acknowledger
from servicekit._bus import Bus, RetryPolicy, dead_letter_queue_name, retry_queue_name
from servicekit._metrics import EVENTS_DEAD_LETTERED, EVENTS_RETRIED

logger = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-attempt"
REASON_HEADER = "x-dead-letter-reason"
ORIGINAL_QUEUE_HEADER = "x-original-queue"


@dataclass(frozen=True)
class Redelivery:
    """Retries and dead letters for one consumer's queue, over its bus and its channel's acks."""

    queue: str
    bus: Bus
    acks: Acknowledger

    async def retry_or_dead_letter(
        self, message: AbstractIncomingMessage, exc: Exception, policy: RetryPolicy
    ) -> None:
        """After a failed attempt: the next delay queue, or after the last the dead-letter queue."""
        attempts = attempts_of(message) + 1
        if attempts >= policy.max_attempts:
            reason = f"failed {attempts} attempts; last error: {describe_error(exc)}"
            await self.dead_letter(message, reason, attempts=attempts)
            return
        step = min(attempts - 1, len(policy.delays) - 1)
        await self._forward(
            message,
            retry_queue_name(self.queue, step),
            {ATTEMPT_HEADER: attempts},
            expiration=policy.delays[step],
        )
        EVENTS_RETRIED.labels(self.queue).inc()

    async def dead_letter(
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
        self,
        message: AbstractIncomingMessage,
        queue: str,
        extra_headers: dict[str, Any],
        *,
        expiration: float | None = None,
    ) -> None:
        """Copy the message to another queue with confirms, then ack the original."""
        copy = copy_message(message, extra_headers, expiration=expiration)
        try:
            await self.bus.publish_to_queue(queue, copy)
        except Exception:
            logger.warning("could not forward to %s; message stays queued", queue, exc_info=True)
            await self.acks.requeue(message)
            return
        await self.acks.ack(message)


def copy_message(
    message: AbstractIncomingMessage,
    extra_headers: dict[str, Any],
    *,
    expiration: float | None = None,
) -> aio_pika.Message:
    """The same body and properties with some headers added or replaced.

    ``expiration`` (seconds) makes the copy expire: in a delay queue, that is the retry's delay.
    """
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
        expiration=expiration,
    )


def attempts_of(message: AbstractIncomingMessage) -> int:
    """How many times handling this message has failed so far."""
    value = (message.headers or {}).get(ATTEMPT_HEADER, 0)
    return value if isinstance(value, int) else 0


def describe_error(exc: Exception) -> str:
    """The exception's type and message, as one line for logs and headers."""
    return "".join(traceback.format_exception_only(exc)).strip()
