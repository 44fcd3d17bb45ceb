"""The image jobs table: one row per (recipe, image version), processed once."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from servicekit import utcnow


class JobStatus(StrEnum):
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"
    #: A newer image of the recipe was ready first: this one was never published.
    SUPERSEDED = "superseded"
    #: Its assets were deleted (a newer image replaced it, or the recipe was deleted).
    PURGED = "purged"


#: A job in one of these states is never processed again.
FINISHED = frozenset({JobStatus.READY, JobStatus.FAILED, JobStatus.SUPERSEDED, JobStatus.PURGED})


class ImageJob(SQLModel, table=True):
    __tablename__ = "image_jobs"
    __table_args__ = (UniqueConstraint("recipe_id", "image_version"),)

    id: int | None = Field(default=None, primary_key=True)
    recipe_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    image_version: int
    status: str = Field(default=JobStatus.PROCESSING, max_length=20)
    #: Attempts started, counted in their own transaction so failed ones are counted too.
    attempts: int = 0
    started_at: datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    error: str | None = None
    #: The published variants (what ``recipe.image_ready`` carried).
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
