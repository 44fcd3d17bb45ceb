"""Delivering an event through a consumer's real handlers and inbox, without a broker.

Like FastStream's ``TestRabbitBroker``: the event goes through what the consumer does for one
message (the wire format, the inbox claim, the handler the service registered, one transaction),
so a test never copies a service's handler table.
"""

from typing import Any

from contracts import Envelope, Event, make_envelope
from servicekit._consumer import Consumer


async def deliver(consumer: Consumer, event: Event, **envelope_overrides: Any) -> bool:
    """Apply ``event`` as ``consumer`` applies one message; False if it was a duplicate.

    ``envelope_overrides`` go to ``make_envelope`` (``event_id`` to redeliver the same event,
    ``producer``, ``correlation_id``...). A handler's exception propagates after the rollback,
    inbox row included, as a failed message would be retried.
    """
    envelope = make_envelope(event, **({"producer": "test"} | envelope_overrides))
    received = Envelope.model_validate_json(envelope.model_dump_json())  # as it travels
    async with consumer.session_maker() as session, session.begin():
        return await consumer.apply(received, session=session)
