"""Which acks a committed batch gets: one ``basic.ack(multiple)`` only when it is safe."""

import asyncio
from typing import cast

from aio_pika.abc import AbstractIncomingMessage

from servicekit._acks import Acknowledger


class FakeChannel:
    """Records what would go on the wire, as ``(method, delivery_tag, multiple)``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, bool]] = []
        self.hold_next = asyncio.Event()
        self.hold_next.set()


class FakeMessage:
    def __init__(self, channel: FakeChannel, tag: int) -> None:
        self.channel = channel
        self.delivery_tag = tag

    async def ack(self, multiple: bool = False) -> None:
        await self.channel.hold_next.wait()
        self.channel.sent.append(("ack", self.delivery_tag, multiple))

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        await self.channel.hold_next.wait()
        self.channel.sent.append(("nack", self.delivery_tag, multiple))


def delivered(
    acks: Acknowledger, channel: FakeChannel, tags: range
) -> list[AbstractIncomingMessage]:
    messages = [cast(AbstractIncomingMessage, FakeMessage(channel, tag)) for tag in tags]
    for message in messages:
        acks.delivered(message)
    return messages


async def test_the_lowest_batch_is_acked_with_one_multiple_ack() -> None:
    acks, channel = Acknowledger(), FakeChannel()
    messages = delivered(acks, channel, range(1, 9))
    await acks.ack_committed(messages[:4])
    assert channel.sent == [("ack", 4, True)]
    assert acks.unsettled == 4


async def test_a_later_batch_committing_first_acks_each_message_and_the_earlier_one_at_once() -> (
    None
):
    acks, channel = Acknowledger(), FakeChannel()
    messages = delivered(acks, channel, range(1, 9))
    await acks.ack_committed(messages[4:])  # tags 1-4 are not committed yet
    assert channel.sent == [("ack", tag, False) for tag in range(5, 9)]
    channel.sent.clear()
    await acks.ack_committed(messages[:4])
    assert channel.sent == [("ack", 4, True)]
    assert acks.unsettled == 0


async def test_a_batch_with_an_unsettled_message_inside_its_range_acks_each_message() -> None:
    acks, channel = Acknowledger(), FakeChannel()
    messages = delivered(acks, channel, range(1, 5))
    await acks.ack_committed([messages[0], messages[2]])  # tag 2 is still being handled
    assert channel.sent == [("ack", 1, False), ("ack", 3, False)]


async def test_messages_settled_one_by_one_below_a_batch_do_not_block_it() -> None:
    acks, channel = Acknowledger(), FakeChannel()
    messages = delivered(acks, channel, range(1, 6))
    await acks.ack(messages[0])
    await acks.requeue(messages[1])
    await acks.ack_committed(messages[2:])
    assert channel.sent == [("ack", 1, False), ("nack", 2, False), ("ack", 5, True)]


async def test_a_nack_on_its_way_is_not_swept_up_by_a_later_multiple_ack() -> None:
    acks, channel = Acknowledger(), FakeChannel()
    messages = delivered(acks, channel, range(1, 5))
    channel.hold_next.clear()
    requeueing = asyncio.create_task(acks.requeue(messages[0]))
    await asyncio.sleep(0)
    channel.hold_next.set()
    await acks.ack_committed(messages[1:])
    await requeueing
    assert ("ack", 4, True) not in channel.sent
    assert sorted(channel.sent) == [
        ("ack", 2, False),
        ("ack", 3, False),
        ("ack", 4, False),
        ("nack", 1, False),
    ]


async def test_a_multiple_ack_on_its_way_is_never_covered_by_another() -> None:
    """Acking a tag twice closes the channel: the second batch must not cover the first."""
    acks, channel = Acknowledger(), FakeChannel()
    messages = delivered(acks, channel, range(1, 7))
    channel.hold_next.clear()
    first = asyncio.create_task(acks.ack_committed(messages[:3]))
    await asyncio.sleep(0)
    channel.hold_next.set()
    await acks.ack_committed(messages[3:])
    await first
    assert sorted(channel.sent) == [
        ("ack", 3, True),
        ("ack", 4, False),
        ("ack", 5, False),
        ("ack", 6, False),
    ]


async def test_messages_from_an_earlier_channel_are_acked_one_by_one() -> None:
    acks, old, new = Acknowledger(), FakeChannel(), FakeChannel()
    stale = delivered(acks, old, range(1, 4))
    fresh = delivered(acks, new, range(1, 4))  # tags start again on the new channel
    await acks.ack_committed(stale)
    assert old.sent == [("ack", tag, False) for tag in range(1, 4)]
    assert acks.unsettled == 3, "the stale acks did not forget the new channel's deliveries"
    await acks.ack_committed(fresh)
    assert new.sent == [("ack", 3, True)]
