"""A child process of the event-pipeline scenario: the outbox relay, or the consumer.

    python bench/pipeline_worker.py relay|consume DATABASE_URL AMQP_URL

``relay`` is what an API process runs (servicekit's OutboxRelay through Messaging);
``consume`` is a worker: servicekit's Consumer (inbox, retries, dead letters, batches) whose
handler records, in the inbox's own transaction, how long after its commit each event arrived.
Both run until SIGTERM.
"""

import asyncio
import signal
import sys
from datetime import UTC, datetime

from sqlalchemy import text

from contracts import RatingAdded
from servicekit import Consumer, EventContext, Messaging, create_engine, create_session_maker

QUEUE = "bench.events"
#: A database-only handler, as a service that opts into batches would configure its consumer:
#: up to BATCH_SIZE events a transaction, PREFETCH // BATCH_SIZE transactions at once.
PREFETCH = 200
BATCH_SIZE = 50
RECEIVED_TABLE = """
CREATE TABLE IF NOT EXISTS bench_received (
    event_id uuid PRIMARY KEY,
    latency_ms double precision NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


async def record_arrival(ctx: EventContext, event: RatingAdded) -> None:
    latency = (datetime.now(UTC) - event.rated_at).total_seconds() * 1000
    await ctx.session.execute(
        text("INSERT INTO bench_received (event_id, latency_ms) VALUES (:id, :latency)"),
        {"id": ctx.envelope.event_id, "latency": latency},
    )


async def main(mode: str, database_url: str, amqp_url: str) -> None:
    engine = create_engine(database_url)
    session_maker = create_session_maker(engine)
    consumers = []
    if mode == "consume":
        consumer = Consumer(
            queue=QUEUE,
            producer="bench",
            session_maker=session_maker,
            prefetch=PREFETCH,
            batch_size=BATCH_SIZE,
        )
        consumer.on(RatingAdded, record_arrival)
        consumers.append(consumer)
    messaging = Messaging(
        amqp_url=amqp_url,
        database_url=database_url,
        session_maker=session_maker,
        consumers=consumers,
        relay=mode == "relay",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await messaging.start()
    await stop.wait()
    await messaging.stop()
    await engine.dispose()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(*sys.argv[1:4]))
