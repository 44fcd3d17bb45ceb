"""The service's own copy of user data, and the record of every export it wrote."""

from datetime import datetime

from sqlalchemy import CheckConstraint, Column, DateTime, func
from sqlmodel import Field, SQLModel

from servicekit import utcnow


class User(SQLModel, table=True):
    """The latest known state of one user, kept from ``user.*`` events.

    A deleted user stays as a tombstone (``deleted_at`` set, personal data cleared) carrying the
    deletion's version, so that a late, older ``user.updated`` cannot bring it back. Keeping one
    row per user (never a DELETE) also means every change of a user locks the same row, so
    concurrent events for one user serialise on it.
    """

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            # email may be NULL: users may register without an address (an empty CSV cell).
            "deleted_at IS NOT NULL OR (username IS NOT NULL"
            " AND role IS NOT NULL AND date_joined IS NOT NULL AND updated_at IS NOT NULL)",
            name="ck_users_live_user_is_complete",
        ),
    )

    user_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    username: str | None = None
    email: str | None = None
    role: str | None = Field(default=None, max_length=20)
    is_active: bool = True
    date_joined: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    updated_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    version: int
    deleted_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class Export(SQLModel, table=True):
    """One slot exported: its unique ``slot`` is what keeps a slot from being written twice.

    The row outlives the pruned file (``pruned_at``) so that an old slot is never exported again.
    """

    __tablename__ = "exports"

    id: int | None = Field(default=None, primary_key=True)
    slot: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, unique=True))
    file_name: str = Field(unique=True, max_length=200)
    trigger: str = Field(max_length=20)
    rows: int
    sha256: str = Field(max_length=64)
    newest_updated_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    pruned_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
