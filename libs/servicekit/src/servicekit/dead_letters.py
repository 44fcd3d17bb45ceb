"""Inspect and replay dead letters: ``dead-letters list|show|replay QUEUE``.

``QUEUE`` is the consumer queue (``recipes.events``), not its ``.dlq``. ``show`` takes messages
and puts them back (nothing is lost if it dies); ``replay`` republishes each dead letter to its
queue with its attempt count reset, confirmed by the broker (and refused if the queue is
missing, never dropped), before removing it from the DLQ.
"""

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Any

import aio_pika
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit._bus import dead_letter_queue_name, send_to_queue
from servicekit._redelivery import ATTEMPT_HEADER, REASON_HEADER, attempts_of, copy_message
from servicekit.defaults import DEFAULT_AMQP_URL, DEFAULT_PEEK_LIMIT


class DeadLetterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="")

    amqp_url: str = DEFAULT_AMQP_URL


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    event_type: str | None
    reason: str
    attempts: int
    body: str


async def count(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue(dead_letter_queue_name(queue), passive=True)
        return dlq.declaration_result.message_count or 0


async def peek(amqp_url: str, queue: str, limit: int = DEFAULT_PEEK_LIMIT) -> list[DeadLetter]:
    """Up to ``limit`` dead letters, left in the queue."""
    connection = await aio_pika.connect(amqp_url)
    letters: list[DeadLetter] = []
    async with connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue(dead_letter_queue_name(queue), passive=True)
        taken = []
        for _ in range(limit):
            message = await dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            taken.append(message)
            headers = message.headers or {}
            letters.append(
                DeadLetter(
                    message_id=message.message_id,
                    event_type=message.type,
                    reason=str(headers.get(REASON_HEADER, "delivery limit reached")),
                    attempts=attempts_of(message),
                    body=message.body.decode("utf-8", "replace"),
                )
            )
        for message in taken:
            await message.nack(requeue=True)
    return letters


async def replay(amqp_url: str, queue: str, limit: int | None = None) -> int:
    """Move dead letters back to ``queue``; returns how many were replayed."""
    connection = await aio_pika.connect(amqp_url)
    replayed = 0
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        dlq = await channel.declare_queue(dead_letter_queue_name(queue), passive=True)
        while limit is None or replayed < limit:
            message = await dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            await send_to_queue(
                channel,
                queue,
                copy_message(message, {ATTEMPT_HEADER: 0, REASON_HEADER: None}),
                timeout=10,
            )
            await message.ack()
            replayed += 1
    return replayed


def _as_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "message_id": letter.message_id,
        "event_type": letter.event_type,
        "attempts": letter.attempts,
        "reason": letter.reason,
        "body": letter.body,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dead-letters", description=__doc__)
    parser.add_argument("command", choices=["list", "show", "replay"])
    parser.add_argument("queue", help="the consumer queue, e.g. recipes.events")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    url = DeadLetterSettings().amqp_url
    if args.command == "list":
        print(f"{dead_letter_queue_name(args.queue)}: {asyncio.run(count(url, args.queue))}")
    elif args.command == "show":
        for letter in asyncio.run(peek(url, args.queue, args.limit or DEFAULT_PEEK_LIMIT)):
            print(json.dumps(_as_json(letter)))
    else:
        print(f"replayed {asyncio.run(replay(url, args.queue, args.limit))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
