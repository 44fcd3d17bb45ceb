"""celery-baseline: Celery on the same RabbitMQ applying the same event to PostgreSQL (issue 20).

What the original backend used for its background work. One task per ``rating.added`` envelope;
the task writes the event's effect (a ``bench_received`` row, ``ON CONFLICT DO NOTHING`` so a
redelivery changes nothing). Configured for throughput as Celery's documentation recommends for
many short tasks: ``acks_late`` (acknowledged after the task, as ours acks after commit), a
prefork pool of as many processes as cores, a large prefetch multiplier, no results stored, no
gossip, mingle or heartbeat events; publisher confirms on (``confirm_publish``) and persistent
messages, as our relay. Each worker process keeps one PostgreSQL connection.

    celery -A celery_app worker --pool prefork --concurrency 2 ...   (worker, from bench/baselines)
    python celery_app.py produce N                                   (sends N tasks, 4 threads)

Runs in the bench's own venv (requirements.txt), never in the workspace.
"""

import json
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from celery import Celery

PRODUCERS = 4
app = Celery("bench", broker=os.environ["BENCH_CELERY_BROKER"])
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH", "50")),
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
_connection: psycopg.Connection[Any] | None = None


def _database() -> psycopg.Connection[Any]:
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ["BENCH_CELERY_DSN"], autocommit=True)
    return _connection


@app.task(name="bench.record_rating")  # type: ignore[untyped-decorator]
def record_rating(envelope: dict[str, Any]) -> None:
    rated_at = datetime.fromisoformat(envelope["payload"]["rated_at"])
    latency = (datetime.now(UTC) - rated_at).total_seconds() * 1000
    _database().execute(
        "INSERT INTO bench_received (event_id, latency_ms) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (envelope["event_id"], latency),
    )


def produce(total: int, template: dict[str, Any]) -> None:
    """``total`` tasks from PRODUCERS threads; prints the start time (epoch seconds)."""

    def producer(count: int) -> None:
        for _ in range(count):
            envelope = {
                **template,
                "event_id": str(uuid.uuid4()),
                "payload": {**template["payload"], "rated_at": datetime.now(UTC).isoformat()},
            }
            record_rating.apply_async(args=[envelope])

    threads = [
        threading.Thread(target=producer, args=(total // PRODUCERS,)) for _ in range(PRODUCERS)
    ]
    print(time.time(), flush=True)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(int(sys.argv[2]), json.loads(sys.stdin.read()))
