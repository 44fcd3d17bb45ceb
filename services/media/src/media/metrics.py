"""The media worker's own metrics (the servicekit ones cover the queue and the handlers)."""

from prometheus_client import Counter, Histogram

IMAGE_JOBS = Counter(
    "media_image_jobs_total",
    "Image jobs by outcome (ready, failed, duplicate, superseded, error).",
    ["outcome"],
)
PROCESSING_SECONDS = Histogram(
    "media_image_processing_seconds",
    "Fetch, validation, rendering and upload of one image.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60),
)
QUEUE_WAIT_SECONDS = Histogram(
    "media_image_queue_wait_seconds",
    "From the event's creation to the start of its processing.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
