"""Prometheus metrics shared by every service.

A worker is one process with one registry. An API may run several uvicorn processes
(``servicekit._serving``), which then keep their values in files under
``PROMETHEUS_MULTIPROC_DIR`` that ``/metrics`` adds up, so any process answers for all of them.
Gauges say how their processes' values combine there: the outbox gauges are the same database
read by every relay, so the most recent reading is the value. The ``process_*`` metrics, which
prometheus_client cannot add up, are reported per live process of the API (label ``pid``).
"""

import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

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
    directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
        registry.register(ApiProcesses(Path(directory)))
        return generate_latest(registry)
    return generate_latest()


#: The files prometheus_client writes per process: ``<kind>_<pid>.db``.
_WRITER_FILE = re.compile(r"_(\d+)\.db$")


class ApiProcesses(Collector):
    """prometheus_client's process metrics (CPU, memory, file descriptors) for every live
    process sharing ``directory``, each sample labelled with its ``pid``: one scrape shows a
    process that leaks or spins, whichever process answers it. The processes are those that
    have written a value there (every API process does at its first request)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid in sorted(self._live_writers()):
            reader = ProcessCollector(pid=functools.partial(int, pid), registry=None)
            for family in reader.collect():
                into = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    into.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        yield from merged.values()

    def _live_writers(self) -> set[int]:
        pids = {
            int(match.group(1))
            for path in self._directory.glob("*.db")
            if (match := _WRITER_FILE.search(path.name))
        }
        # A process that has exited leaves its files (its counts stay in the sums).
        return {pid for pid in pids if Path(f"/proc/{pid}").exists()}
