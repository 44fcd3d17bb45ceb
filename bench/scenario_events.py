"""Event pipeline: commit → outbox → broker → consumer inbox commit, with servicekit's parts.

Three processes as in production: this one commits events (``add_event``, 50 per transaction,
4 concurrent producers, so the producer is not what is measured), a relay process
(``OutboxRelay``) and a consumer process (``Consumer`` with its inbox, committing in batches),
see pipeline_worker.py.
Throughput is events/s from the first commit to the last inbox commit. Latency is measured
afterwards at 10% of that throughput, one event per transaction, commit to handler (whose
transaction then commits the inbox row).

Measured in the same run against two references that do the same work (issue 20), each on its
own scratch database and vhost: ``pipeline-ceiling`` (pipeline_ceiling.py: a minimal hand-written
outbox → relay → consumer with an inbox, raw psycopg and aio-pika, the same durability) and
``celery-baseline`` (baselines/celery_app.py: Celery tasks carrying the same envelopes, applied to
PostgreSQL by a prefork worker with acks late). Both measure as ours does: from the first
commit (or send) to the last effect committed, at the same event count.
"""

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pipeline_ceiling
import psycopg
import sqlalchemy
from baselines import BASELINES_DIR, baseline_python, venv_env
from common import (
    BENCH_DIR,
    MANAGEMENT_URL,
    Outcome,
    Row,
    Size,
    libpq,
    median,
    process,
    scratch_database,
    scratch_vhost,
)
from pipeline_worker import BATCH_SIZE, QUEUE, RECEIVED_TABLE
from sqlmodel import SQLModel

import servicekit._tables  # noqa: F401  (registers the outbox and inbox tables)
from contracts import RatingAdded, make_envelope
from servicekit import SessionMaker, add_event, create_engine, create_session_maker

#: What profiling showed limits the throughput goal; printed when it is not met.
PIPELINE_LIMIT = (
    "CPU on 2 shared cores. Read from /proc over 20,000 events, an event costs about 1.8 ms of"
    " CPU across the processes: consumer ~0.7, RabbitMQ ~0.45 (quorum publish, delivery, ack),"
    " relay ~0.35, producer ~0.3 (add_event, one statement per event), against about 0.75 ms"
    " for the ceiling. py-spy on the consumer: 45 % is the handler's own INSERT, one round trip"
    " per event (the ceiling's consumer sends its 50 effects in one pipelined executemany; ours"
    " runs each handler to the end before the next, since a handler may read what it or an"
    " earlier one wrote), ~20 % aio-pika receiving frames and acking, ~5 % the inbox claim (one"
    f" statement per batch of up to {BATCH_SIZE}). Handlers that take a whole batch would remove"
    " the per-event round trip; none of the services' handlers is written that way today."
)
PER_TRANSACTION = 50
PRODUCERS = 4
#: Celery's worker processes: as many as the machine's cores (its default).
CELERY_CONCURRENCY = 2


def rating_event(n: int) -> RatingAdded:
    return RatingAdded(
        rating_id=n,
        recipe_id=n % 1000 + 1,
        recipe_title=f"Recipe {n % 1000 + 1}",
        seller_id=7,
        user_id=100_000 + n % 5000,
        username=f"customer{n % 5000}",
        score=n % 5 + 1,
        previous_score=None,
        avg_rating=3.5,
        rating_count=10,
        rated_at=datetime.now(UTC),
    )


async def produce(session_maker: SessionMaker, total: int) -> None:
    """``total`` events in transactions of PER_TRANSACTION, PRODUCERS at a time."""

    async def producer(start: int, count: int) -> None:
        for first in range(start, start + count, PER_TRANSACTION):
            async with session_maker() as session, session.begin():
                for n in range(first, min(first + PER_TRANSACTION, start + count)):
                    await add_event(session, rating_event(n), producer="bench")

    share = total // PRODUCERS
    await asyncio.gather(*(producer(i * share, share) for i in range(PRODUCERS)))


async def produce_at_rate(session_maker: SessionMaker, rate: float, seconds: float) -> int:
    """One event per transaction, ``rate`` per second, for ``seconds``."""
    interval = 1 / rate
    started = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - started) < seconds:
        async with session_maker() as session, session.begin():
            await add_event(session, rating_event(sent), producer="bench")
        sent += 1
        await asyncio.sleep(max(0.0, sent * interval - elapsed - interval))
    return sent


async def wait_received(dsn: str, expected: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = await (await conn.execute("SELECT count(*) FROM bench_received")).fetchone()
            if row and row[0] >= expected:
                return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"fewer than {expected} events consumed after {timeout:.0f}s")


async def pipeline_throughput(database_url: str, total: int) -> float:
    engine = create_engine(database_url)
    dsn = libpq(database_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE bench_received")
    started = time.time()
    await produce(create_session_maker(engine), total)
    await wait_received(dsn, total, timeout=600)
    await engine.dispose()
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT extract(epoch FROM max(received_at)) FROM bench_received")
        last = float(row.fetchone()[0])  # type: ignore[index]
    return total / (last - started)


async def pipeline_latency(database_url: str, rate: float, seconds: float) -> list[float]:
    engine = create_engine(database_url)
    dsn = libpq(database_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE bench_received")
    sent = await produce_at_rate(create_session_maker(engine), rate, seconds)
    await wait_received(dsn, sent, timeout=120)
    await engine.dispose()
    with psycopg.connect(dsn) as conn:
        return [
            float(r)
            for r in conn.execute(
                "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY latency_ms)"
                " FROM bench_received"
            ).fetchone()[0]  # type: ignore[index]
        ]


async def ceiling_throughput(dsn: str, total: int) -> float:
    """pipeline-ceiling: the same events through the hand-written outbox, relay and inbox."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE bench_received, ceiling_inbox")

    async def producer(start: int, count: int) -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            for first in range(start, start + count, PER_TRANSACTION):
                rows = []
                for n in range(first, min(first + PER_TRANSACTION, start + count)):
                    envelope = make_envelope(rating_event(n), producer="bench")
                    rows.append(
                        (envelope.event_id, envelope.routing_key, envelope.model_dump_json())
                    )
                await pipeline_ceiling.produce_batch(conn, rows)

    started = time.time()
    share = total // PRODUCERS
    await asyncio.gather(*(producer(i * share, share) for i in range(PRODUCERS)))
    await wait_received(dsn, total, timeout=600)
    return total / (_last_received(dsn) - started)


def celery_throughput(dsn: str, broker: str, total: int) -> float:
    """celery-baseline: the same envelopes as Celery tasks, sent from PRODUCERS threads."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE bench_received")
    python = baseline_python()
    template = make_envelope(rating_event(0), producer="bench").model_dump(mode="json")
    sent = subprocess.run(
        [str(python), str(BASELINES_DIR / "celery_app.py"), "produce", str(total)],
        input=json.dumps(template),
        capture_output=True,
        text=True,
        check=True,
        env=venv_env(python, BENCH_CELERY_BROKER=broker, BENCH_CELERY_DSN=dsn),
    )
    started = float(sent.stdout.split()[0])
    asyncio.run(wait_received(dsn, total, timeout=600))
    return total / (_last_received(dsn) - started)


def _last_received(dsn: str) -> float:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT extract(epoch FROM max(received_at)) FROM bench_received")
        return float(row.fetchone()[0])  # type: ignore[index]


def _vhost_of(amqp_url: str) -> str:
    return amqp_url.rsplit("/", 1)[1]


def wait_consumer(amqp_url: str, *, queue: str = QUEUE, timeout: float = 60) -> None:
    """Until the consumer's queue exists and has a consumer (else early events are unroutable)."""
    url = f"{MANAGEMENT_URL}/api/queues/{_vhost_of(amqp_url)}/{queue}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(url, auth=("guest", "guest"), timeout=5)
        if response.status_code == 200 and response.json().get("consumers", 0) >= 1:
            return
        time.sleep(0.2)
    raise TimeoutError(f"no consumer on {queue} after {timeout:.0f}s")


@contextlib.contextmanager
def pipeline(scenario: str) -> Iterator[tuple[str, str]]:
    with scratch_database(scenario) as database_url, scratch_vhost(scenario) as amqp_url:
        with psycopg.connect(libpq(database_url), autocommit=True) as conn:
            conn.execute(RECEIVED_TABLE)
        engine = sqlalchemy.create_engine(database_url)
        SQLModel.metadata.create_all(engine)
        engine.dispose()
        worker = [sys.executable, str(BENCH_DIR / "pipeline_worker.py")]
        with (
            process([*worker, "consume", database_url, amqp_url], name="consumer"),
            process([*worker, "relay", database_url, amqp_url], name="relay"),
        ):
            wait_consumer(amqp_url)
            yield database_url, amqp_url


@contextlib.contextmanager
def ceiling_pipeline() -> Iterator[str]:
    """pipeline-ceiling's relay and consumer on a scratch database and vhost; yields the DSN."""
    with scratch_database("ceiling") as database_url, scratch_vhost("ceiling") as amqp_url:
        dsn = libpq(database_url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(RECEIVED_TABLE)
            conn.execute(pipeline_ceiling.TABLES)
        worker = [sys.executable, str(BENCH_DIR / "pipeline_ceiling.py")]
        with (
            process([*worker, "consume", dsn, amqp_url], name="ceiling-consumer"),
            process([*worker, "relay", dsn, amqp_url], name="ceiling-relay"),
        ):
            wait_consumer(amqp_url, queue=pipeline_ceiling.QUEUE)
            yield dsn


@contextlib.contextmanager
def celery_pipeline() -> Iterator[tuple[str, str]]:
    """A Celery worker on a scratch database and vhost; yields the DSN and the broker URL."""
    with scratch_database("celery") as database_url, scratch_vhost("celery") as amqp_url:
        dsn = libpq(database_url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(RECEIVED_TABLE)
        python = baseline_python()
        args = [str(python), "-m", "celery", "--workdir", str(BASELINES_DIR), "-A", "celery_app"]
        args += ["worker", "--pool", "prefork", "--concurrency", str(CELERY_CONCURRENCY)]
        args += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
        env = venv_env(python, BENCH_CELERY_BROKER=amqp_url, BENCH_CELERY_DSN=dsn)
        with process(args, env=env, name="celery"):
            wait_consumer(amqp_url, queue="celery")
            yield dsn, amqp_url


def event_pipeline(size: Size) -> Outcome:
    total = 5_000 if size.quick else 50_000
    rounds = 1 if size.quick else 2
    latency_seconds = 5 if size.quick else 10
    outcome = Outcome("event-pipeline")
    ours: list[float] = []
    ceiling: list[float] = []
    celery: list[float] = []
    with (
        pipeline("events") as (database_url, _),
        ceiling_pipeline() as ceiling_dsn,
        celery_pipeline() as (celery_dsn, celery_broker),
    ):
        for _ in range(rounds):
            ours.append(asyncio.run(pipeline_throughput(database_url, total // rounds)))
            ceiling.append(asyncio.run(ceiling_throughput(ceiling_dsn, total // rounds)))
            celery.append(celery_throughput(celery_dsn, celery_broker, total // rounds))
        rate = median(ours) / 10
        p50, p99 = asyncio.run(pipeline_latency(database_url, rate, latency_seconds))
    a, b, c = median(ours), median(ceiling), median(celery)
    outcome.rows = [
        Row(
            "event-pipeline",
            "events/s vs pipeline-ceiling",
            "events/s",
            a,
            b,
            "≥ 0.7x pipeline-ceiling",
            a / b >= 0.7,
            target=0.7,
            note=PIPELINE_LIMIT,
        ),
        Row(
            "event-pipeline",
            "events/s vs celery-baseline",
            "events/s",
            a,
            c,
            "≥ 1x celery-baseline",
            a / c >= 1.0,
            target=1.0,
            note=PIPELINE_LIMIT,
        ),
        Row("event-pipeline", "p50 latency at 10% load", "ms", p50, None, "≤ 20 ms", p50 <= 20),
        Row("event-pipeline", "p99 latency at 10% load", "ms", p99, None, "—", None),
    ]
    outcome.details = {
        "events": total,
        "rounds": rounds,
        "latency_load_events_per_s": round(rate, 1),
        "pipeline_ceiling": "raw psycopg outbox, aio-pika relay with confirms, inbox consumer",
        "celery_baseline": f"Celery prefork x{CELERY_CONCURRENCY}, acks late, confirm_publish",
    }
    return outcome
