"""The notifier's tables: its copies of users, recipes and ratings, preferences, deliveries."""

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Column, Date, DateTime, Index, func, text
from sqlmodel import Field, SQLModel

from servicekit import utcnow


def _timestamp(*, nullable: bool = False, index: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


def _written_at() -> Column[datetime]:
    """When the row was written; the database fills it for core inserts too."""
    return Column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Recipient(SQLModel, table=True):
    """The notifier's copy of a user, applied only from newer versions of ``user.*`` events."""

    __tablename__ = "recipients"

    user_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    username: str = Field(max_length=300)
    #: None while the user has no address (registration does not require one): no mail then.
    email: str | None = Field(default=None, max_length=320)
    role: str = Field(max_length=20)
    active: bool = True
    version: int
    deleted: bool = False
    #: A permanent SMTP failure (5xx) for ``email``: no digest goes there until it changes.
    bouncing: bool = False
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_written_at())


class Preference(SQLModel, table=True):
    """What a user chose; a user without a row gets the digest in the default zone."""

    __tablename__ = "preferences"

    user_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    daily_digest: bool = True
    timezone: str | None = Field(default=None, max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_written_at())


class Recipe(SQLModel, table=True):
    """Digest material; a deletion leaves a tombstone so a late ``recipe.created`` stays dead."""

    __tablename__ = "recipes"

    recipe_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    seller_id: int
    seller_username: str = Field(default="", max_length=300)
    title: str = Field(default="", max_length=300)
    created_at: datetime = Field(sa_column=_timestamp(index=True))
    deleted: bool = False


class Rating(SQLModel, table=True):
    """The latest known score of one rating (a re-rating replaces it when newer)."""

    __tablename__ = "ratings"
    __table_args__ = (Index("ix_ratings_seller_rated", "seller_id", "rated_at"),)

    rating_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    recipe_id: int = Field(index=True)
    recipe_title: str = Field(max_length=300)
    seller_id: int
    user_id: int
    username: str = Field(max_length=300)
    score: int
    rated_at: datetime = Field(sa_column=_timestamp(index=True))


class MailKind(StrEnum):
    DIGEST = "digest"
    WELCOME = "welcome"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    #: Nothing to say (``skip_empty``), or the user unsubscribed or left before it went out.
    SKIPPED = "skipped"
    #: Refused for good (5xx), out of attempts, or interrupted mid-send (see ``dispatch``).
    FAILED = "failed"


class Delivery(SQLModel, table=True):
    """One mail to one user: at most one digest per (user, local date), one welcome per user."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index(
            "uq_deliveries_digest",
            "user_id",
            "digest_date",
            unique=True,
            postgresql_where=text("kind = 'digest'"),
        ),
        Index(
            "uq_deliveries_welcome",
            "user_id",
            unique=True,
            postgresql_where=text("kind = 'welcome'"),
        ),
        Index(
            "ix_deliveries_pending",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_deliveries_user_sent", "user_id", "as_of"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)
    user_id: int
    digest_date: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    #: Content is what was known at this instant (the digest slot); the next digest starts here.
    as_of: datetime = Field(sa_column=_timestamp())
    status: str = Field(default=DeliveryStatus.PENDING, max_length=20)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    claimed_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_written_at())


class DigestScan(SQLModel, table=True):
    """A scan slot already looked at: the next scan starts where this one ended."""

    __tablename__ = "digest_scans"

    slot: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    digests_planned: int = 0
    processed_at: datetime = Field(default_factory=utcnow, sa_column=_written_at())
