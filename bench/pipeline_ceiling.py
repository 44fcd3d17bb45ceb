"""pipeline-ceiling: a minimal hand-written outbox → relay → consumer with an inbox (issue 20).

The event pipeline's reference: the same work as servicekit's pipeline with the same durability
and nothing else. Raw psycopg and aio-pika; no ORM, no tracing, no metrics, no retry or
dead-letter topology.

- Producer (``produce``): the events' outbox rows, 50 a transaction, with one ``NOTIFY``.
- Relay (``python bench/pipeline_ceiling.py relay DSN AMQP_URL``): locks up to RELAY_BATCH
  pending rows (``FOR UPDATE SKIP LOCKED``), publishes them persistent to a topic exchange with
  publisher confirms awaited together, deletes them, commits; sleeps on ``LISTEN``.
- Consumer (``... consume DSN AMQP_URL``): a quorum queue, prefetch PREFETCH; takes what has
  arrived (up to BATCH_SIZE), writes each event's inbox row and its effect (a ``bench_received``
  row) in one transaction, the effect only when the inbox row is new, commits, then acks the
  batch with one ``multiple`` ack: acks after commit, a redelivery changes nothing.
"""

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from typing import Any

import aio_pika
import psycopg
from aio_pika.abc import AbstractIncomingMessage
from pipeline_worker import BATCH_SIZE, PREFETCH

EXCHANGE = "ceiling.events"
QUEUE = "ceiling.rating-added"
CHANNEL = "ceiling_outbox"
RELAY_BATCH = 500
TABLES = """
CREATE TABLE IF NOT EXISTS ceiling_outbox (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    routing_key text NOT NULL,
    body bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS ceiling_inbox (event_id uuid PRIMARY KEY)
"""
APPLY = """
WITH fresh AS (
    INSERT INTO ceiling_inbox (event_id) VALUES (%(id)s) ON CONFLICT DO NOTHING RETURNING event_id
)
INSERT INTO bench_received (event_id, latency_ms) SELECT event_id, %(latency)s FROM fresh
"""


async def produce_batch(conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]]) -> None:
    """One transaction: the rows ``(event_id, routing_key, body)`` and one NOTIFY."""
    async with conn.transaction(), conn.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO ceiling_outbox (event_id, routing_key, body) VALUES (%s, %s, %s)", rows
        )
        await cursor.execute(f"NOTIFY {CHANNEL}")


async def relay(dsn: str, amqp_url: str, stop: asyncio.Event) -> None:
    wake = asyncio.Event()
    async with (
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(dsn) as conn,
        await aio_pika.connect(amqp_url) as amqp,
    ):
        await listener.execute(f"LISTEN {CHANNEL}")

        async def listen() -> None:
            async for _ in listener.notifies():
                wake.set()

        listening = asyncio.create_task(listen())
        channel = await amqp.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        while not stop.is_set():
            async with conn.transaction():
                rows = await (
                    await conn.execute(
                        "SELECT id, event_id, routing_key, body FROM ceiling_outbox"
                        " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                        (RELAY_BATCH,),
                    )
                ).fetchall()
                if rows:
                    await asyncio.gather(
                        *(
                            exchange.publish(
                                aio_pika.Message(
                                    body=bytes(body),
                                    content_type="application/json",
                                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                    message_id=str(event_id),
                                ),
                                routing_key=routing_key,
                                timeout=30,
                            )
                            for _, event_id, routing_key, body in rows
                        )
                    )
                    await conn.execute(
                        "DELETE FROM ceiling_outbox WHERE id = ANY(%s)", ([r[0] for r in rows],)
                    )
            if len(rows) < RELAY_BATCH:
                wake.clear()
                waiting = asyncio.ensure_future(wake.wait())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiting, stopping}, timeout=1.0, return_when="FIRST_COMPLETED")
                waiting.cancel()
                stopping.cancel()
        listening.cancel()


async def consume(dsn: str, amqp_url: str, stop: asyncio.Event) -> None:
    arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    async with (
        await psycopg.AsyncConnection.connect(dsn) as conn,
        await aio_pika.connect(amqp_url) as amqp,
    ):
        channel = await amqp.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key="rating.added")
        await queue.consume(arrived.put)
        while not stop.is_set():
            getting = asyncio.ensure_future(arrived.get())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({getting, stopping}, return_when="FIRST_COMPLETED")
            stopping.cancel()
            if not getting.done():
                getting.cancel()
                break
            batch = [getting.result()]
            while len(batch) < BATCH_SIZE and not arrived.empty():
                batch.append(arrived.get_nowait())
            now = datetime.now(UTC)
            params = []
            for message in batch:
                rated_at = datetime.fromisoformat(_rated_at(message.body))
                params.append(
                    {
                        "id": message.message_id,
                        "latency": (now - rated_at).total_seconds() * 1000,
                    }
                )
            async with conn.transaction(), conn.cursor() as cursor:
                await cursor.executemany(APPLY, params)
            await batch[-1].ack(multiple=True)


def _rated_at(body: bytes) -> str:
    rated_at: str = json.loads(body)["payload"]["rated_at"]
    return rated_at


async def main(mode: str, dsn: str, amqp_url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await (relay if mode == "relay" else consume)(dsn, amqp_url, stop)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(*sys.argv[1:4]))
