"""Tables of the auth database (the messaging tables come from ``servicekit._tables``)."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, String, func
from sqlmodel import Field, SQLModel

from servicekit import utcnow


def _timestamp(*, nullable: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    username: str = Field(sa_column=Column(String(150), nullable=False))
    #: None until the user adds one (registration does not require it); no mail goes out before.
    email: str | None = Field(default=None, sa_column=Column(String(254), nullable=True))
    password_hash: str = Field(sa_column=Column(String(255), nullable=False))
    role: str = Field(sa_column=Column(String(20), nullable=False))
    is_active: bool = True
    date_joined: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    #: Grows with every change; carried by every user event so consumers keep the newest.
    version: int = 1


# Unique without regard to case: "Alice" cannot impersonate "alice", nor share her email.
_users = User.__table__  # type: ignore[attr-defined]
Index("uq_users_username_lower", func.lower(_users.c.username), unique=True)
#: Named for the service, which maps a race on it to the email field's error.
EMAIL_UNIQUE_INDEX = "uq_users_email_lower"
Index(EMAIL_UNIQUE_INDEX, func.lower(_users.c.email), unique=True)


class RefreshToken(SQLModel, table=True):
    """One issued refresh token, stored as a SHA-256 of the token, never the token itself.

    Every rotation adds a token to the same family; using a token twice revokes the family.
    """

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_family_id", "family_id"),
        Index("ix_refresh_tokens_user_id", "user_id"),
    )

    jti: str = Field(sa_column=Column(String(64), primary_key=True))
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    family_id: uuid.UUID
    user_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    expires_at: datetime = Field(sa_column=_timestamp())
    used_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class LoginFailure(SQLModel, table=True):
    """A failed sign-in, counted per username and per client address across replicas."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_scope_key_at", "scope", "key", "failed_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    scope: str = Field(sa_column=Column(String(16), nullable=False))
    key: str = Field(sa_column=Column(String(255), nullable=False))
    failed_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
