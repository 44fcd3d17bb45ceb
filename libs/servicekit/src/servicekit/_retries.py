"""How often a failed event is tried again, and after what delays, before it is dead-lettered.

Pure data, apart from the bus: the settings build one from the environment without loading
aio-pika; the consumer, the redelivery and the topology read it.
"""

from dataclasses import dataclass

from servicekit.defaults import DEFAULT_DELIVERY_LIMIT, DEFAULT_RETRY_DELAYS


@dataclass(frozen=True)
class RetryPolicy:
    """Delays (seconds) between attempts; after the last delay's attempt fails, dead-letter."""

    delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    #: Deliveries without an ack (consumer crashes) before the broker dead-letters by itself.
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1
