"""The notifier's own Prometheus metrics (beside servicekit's)."""

from prometheus_client import Counter, Gauge

DIGESTS_SENT = Counter("notifier_digests_sent_total", "Digest mails accepted by the transport.")
DIGESTS_DUE = Gauge("notifier_digests_due", "Digest mails planned and not yet sent.")
MAIL_FAILURES = Counter(
    "notifier_mail_failures_total",
    "Failed mail attempts, by reason (temporary, server_unavailable, permanent,"
    " invalid_address, interrupted).",
    ["reason"],
)
