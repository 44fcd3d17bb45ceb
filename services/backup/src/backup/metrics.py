"""The backup service's own Prometheus metrics (alert when the last success is too old)."""

from prometheus_client import Counter, Gauge

LAST_SUCCESS = Gauge(
    "backup_last_success_timestamp_seconds",
    "Unix time of the last export written or found already written.",
)
ROWS_EXPORTED = Gauge("backup_rows_exported", "Users in the last export written.")
RUNS = Counter(
    "backup_runs_total", "Export runs by outcome (written, already_exported, failed).", ["outcome"]
)
