"""The envelope every event travels in: identity, causality and the versioned payload."""

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.events import EVENT_MODELS, Event


class UnknownEventError(ValueError):
    """An envelope names a (type, version) this build does not know."""


class Envelope(BaseModel):
    """Wire format of an event. ``event_id`` is also the AMQP ``message_id``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID
    type: str = Field(min_length=1)
    version: int = Field(ge=1)
    occurred_at: AwareDatetime
    producer: str = Field(min_length=1)
    correlation_id: str | None = None
    causation_id: str | None = None
    payload: dict[str, Any]

    @property
    def routing_key(self) -> str:
        return self.type


def make_envelope(
    event: Event,
    *,
    producer: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    """Wrap an event; a fresh event id unless the caller needs a deterministic one."""
    new_id = event_id or uuid.uuid4()
    return Envelope(
        event_id=new_id,
        type=event.event_type,
        version=event.event_version,
        occurred_at=occurred_at or datetime.now(UTC),
        producer=producer,
        correlation_id=correlation_id or str(new_id),
        causation_id=causation_id,
        payload=event.model_dump(mode="json"),
    )


def parse_event(envelope: Envelope) -> Event:
    """The typed payload; raises UnknownEventError or pydantic.ValidationError."""
    model = EVENT_MODELS.get((envelope.type, envelope.version))
    if model is None:
        raise UnknownEventError(f"unknown event {envelope.type} v{envelope.version}")
    return model.model_validate(envelope.payload)
