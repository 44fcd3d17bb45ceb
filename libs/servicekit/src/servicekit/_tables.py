"""Tables every service keeps in its own database for reliable messaging.

They live in ``SQLModel.metadata`` so that each service's Alembic migrations create them beside
the service's own tables.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxMessage(SQLModel, table=True):
    """An event written in the same transaction as the state change it announces.

    A row is deleted once the broker has confirmed it: every row here is pending.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_created_at", "created_at"),)

    event_id: uuid.UUID = Field(primary_key=True)
    routing_key: str = Field(max_length=200)
    envelope: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    headers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class QuarantinedEvent(SQLModel, table=True):
    """An outbox row that could not be published, set aside so the rest of the outbox flows.

    The same columns as ``outbox_messages`` plus why and when; ``outbox-quarantine release``
    moves it back to the outbox.
    """

    __tablename__ = "outbox_quarantine"

    event_id: uuid.UUID = Field(primary_key=True)
    routing_key: str = Field(max_length=200)
    envelope: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    headers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    quarantined_at: datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class InboxMessage(SQLModel, table=True):
    """An event a consumer has applied: its id makes a redelivery a no-op."""

    __tablename__ = "inbox_messages"
    #: Pruning deletes by age (``servicekit._inbox``).
    __table_args__ = (Index("ix_inbox_messages_handled_at", "handled_at"),)

    consumer: str = Field(primary_key=True, max_length=200)
    event_id: uuid.UUID = Field(primary_key=True)
    event_type: str = Field(max_length=200)
    handled_at: datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class ScheduledTick(SQLModel, table=True):
    """One slot of one cron job, inserted once whatever the number of emitters."""

    __tablename__ = "scheduled_ticks"

    job: str = Field(primary_key=True, max_length=100)
    slot: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    emitted_at: datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
