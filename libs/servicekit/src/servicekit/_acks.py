"""Acks for one consumer channel: a committed batch is acked with one ``basic.ack(multiple)``.

``basic.ack(multiple=True)`` on delivery tag N settles every unsettled delivery up to N on the
channel, so it is only safe when every lower tag still unsettled belongs to the batch being
acked: batches run concurrently, and a later batch that commits first must not ack an earlier
batch's messages before their transaction commits. ``Acknowledger`` keeps the unsettled
deliveries of the current channel (by tag, holding the message itself so that a message from
an earlier channel, whose tags started again after a reconnect, is never taken for a current
one) and falls back to an ack per message when the shortcut is not safe.

A delivery is forgotten only once its ack or nack has been written: while a batch's multiple
ack is on its way its tags still count as unsettled, so no other batch's multiple ack can cover
them (acking a tag twice is a channel error), and a message being nacked back to the queue is
never swept up by someone else's multiple ack.
"""

import logging
from collections.abc import Awaitable, Sequence

from aio_pika.abc import AbstractIncomingMessage

logger = logging.getLogger(__name__)


class Acknowledger:
    """Tracks a channel's unsettled deliveries; acks and nacks go through it."""

    def __init__(self) -> None:
        self._channel: object | None = None
        self._unsettled: dict[int, AbstractIncomingMessage] = {}
        #: Multiple acks sent and the messages they settled: how often the shortcut applies.
        self.multiple_acks = 0
        self.messages_acked_together = 0

    @property
    def unsettled(self) -> int:
        return len(self._unsettled)

    def delivered(self, message: AbstractIncomingMessage) -> None:
        """Record a delivery; a delivery on a new channel (after a reconnect) starts afresh."""
        tag = message.delivery_tag
        try:
            channel = message.channel
        except Exception:  # closed already: never acked together, so no need to track it
            return
        if tag is None:  # only without acks, which this consumer never asks for
            return
        if channel is not self._channel:
            self._channel = channel
            self._unsettled = {}
        self._unsettled[tag] = message

    async def ack(self, message: AbstractIncomingMessage) -> None:
        await self._settle(message, message.ack())

    async def requeue(self, message: AbstractIncomingMessage) -> None:
        await self._settle(message, message.nack(requeue=True))

    async def ack_committed(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        """Ack messages whose effects have committed: at once if safe, else one by one."""
        top = self._top_if_lower_tags_settled(messages)
        if top is None:
            for message in messages:
                await self.ack(message)
            return
        try:
            await _settle(top.ack(multiple=True))
        finally:
            for message in messages:
                self._forget(message)
        self.multiple_acks += 1
        self.messages_acked_together += len(messages)

    def _top_if_lower_tags_settled(
        self, messages: Sequence[AbstractIncomingMessage]
    ) -> AbstractIncomingMessage | None:
        """The batch's highest delivery if no other unsettled delivery lies below it."""
        if len(messages) < 2:
            return None
        unsettled = self._unsettled
        tags = set()
        for message in messages:
            tag = message.delivery_tag
            if tag is None or unsettled.get(tag) is not message:
                return None  # from an earlier channel, or settled already
            tags.add(tag)
        top = max(tags)
        if any(tag < top and tag not in tags for tag in unsettled):
            return None
        return unsettled[top]

    async def _settle(self, message: AbstractIncomingMessage, action: Awaitable[None]) -> None:
        try:
            await _settle(action)
        finally:
            self._forget(message)

    def _forget(self, message: AbstractIncomingMessage) -> None:
        tag = message.delivery_tag
        if tag is not None and self._unsettled.get(tag) is message:
            del self._unsettled[tag]


async def _settle(action: Awaitable[None]) -> None:
    """Ack or nack; if the channel died meanwhile, the broker redelivers and the inbox dedups."""
    try:
        await action
    except Exception:
        logger.warning("ack/nack failed (channel closed?); the message will be redelivered")
