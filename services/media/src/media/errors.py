"""The one domain error of the pipeline: an image that can never succeed.

Anything else that goes wrong (a timeout, a 5xx, a crashed worker process) is transient: it
propagates, and the consumer retries the event and finally dead-letters it.
"""


class ImageRejected(Exception):
    """The image can never be processed. ``reason`` is written for the seller; ``detail`` is
    for the log and the job row."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail or reason

    def __str__(self) -> str:
        return self.detail if self.detail == self.reason else f"{self.reason} ({self.detail})"
