"""Prometheus metrics shared by every service.

A worker is one process with one registry. An API may run several uvicorn processes
(``servicekit._serving``), which then keep their values in files under
``PROMETHEUS_MULTIPROC_DIR`` that ``/metrics`` adds up, so any process answers for all of them.
Gauges say how their processes' values combine there: the outbox gauges are the same database
read by every relay, so the most recent reading is the value.
"""

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

#: Where the processes of one API keep their values (prometheus_client's own variable).
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

EVENTS_PUBLISHED = Counter(
    "events_published_total", "Events confirmed by the broker.", ["event_type"]
)
EVENTS_CONSUMED = Counter(
    "events_consumed_total",
    "Events a consumer finished, by outcome (handled, duplicate).",
    ["queue", "event_type", "outcome"],
)
EVENTS_RETRIED = Counter(
    "events_retried_total", "Events sent to a delay queue after a failure.", ["queue"]
)
EVENTS_DEAD_LETTERED = Counter(
    "events_dead_lettered_total", "Events parked in a dead-letter queue.", ["queue"]
)
OUTBOX_BACKLOG = Gauge(
    "outbox_backlog", "Outbox rows not yet published.", multiprocess_mode="mostrecent"
)
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row (0 when empty).",
    multiprocess_mode="mostrecent",
)
OUTBOX_QUARANTINED = Gauge(
    "outbox_quarantined",
    "Outbox rows set aside because they cannot be published.",
    multiprocess_mode="mostrecent",
)
OUTBOX_QUARANTINED_TOTAL = Counter(
    "outbox_events_quarantined_total", "Outbox rows this process moved to the quarantine."
)
CONSUMERS_ATTACHED = Gauge(
    "consumers_attached",
    "Queues this process is consuming from right now.",
    ["queue"],
    multiprocess_mode="mostrecent",
)
HANDLER_SECONDS = Histogram(
    "event_handler_seconds", "Time spent handling one event.", ["queue", "event_type"]
)
HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds", "HTTP request latency.", ["method", "route"]
)


def exposition() -> bytes:
    """What ``/metrics`` answers: this process's registry, or every process's when shared."""
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
        return generate_latest(registry)
    return generate_latest()
