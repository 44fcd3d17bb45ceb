"""Names on the broker that every service must agree on."""

from typing import Final

#: The one durable topic exchange every event is published to; routing key = event type.
EXCHANGE_NAME: Final = "platform.events"
