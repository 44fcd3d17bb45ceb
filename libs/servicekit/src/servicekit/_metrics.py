"""Prometheus metrics shared by every service (one registry per process)."""

from prometheus_client import Counter, Gauge, Histogram

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
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Outbox rows not yet published.")
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0 when empty)."
)
OUTBOX_QUARANTINED = Gauge(
    "outbox_quarantined", "Outbox rows set aside because they cannot be published."
)
OUTBOX_QUARANTINED_TOTAL = Counter(
    "outbox_events_quarantined_total", "Outbox rows this process moved to the quarantine."
)
CONSUMERS_ATTACHED = Gauge(
    "consumers_attached", "Queues this process is consuming from right now.", ["queue"]
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
