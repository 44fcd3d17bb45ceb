"""Tables of the recipes service.

Aggregates (``rating_sum``, ``rating_count``, ``avg_rating``) are maintained incrementally in SQL
by the rating use cases, never recounted. ``search_vector`` is a generated column (title weight
A, description B, ingredients C) behind a GIN index. Originals of uploaded images are kept in
``recipe_images`` (bytea), in the same transaction as the recipe, until the media service has
processed them.

``recipe_list_versions`` is the recipe list's validator (its ETag): a trigger on ``recipes``
(migration 0002) bumps one of its shards when a transaction that changed any recipe row
commits, so the sum of the shards changes with every committed change. Shards,
so that concurrent ratings of different recipes do not queue on one counter row.

``recipe_count_shards`` holds the number of recipes the same way (statement-level triggers,
migration 0007), so the unfiltered list reads a sum of 16 rows instead of counting the table.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Column,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import QueryableAttribute, defer
from sqlalchemy.orm.interfaces import LoaderOption
from sqlmodel import Field, SQLModel

from servicekit import utcnow

SEARCH_CONFIG = "english"
SEARCH_VECTOR_SQL = (
    f"setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, coalesce(title, '')), 'A')"
    f" || setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, coalesce(description, '')), 'B')"
    f" || setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, coalesce(ingredients, '')), 'C')"
)


def _timestamp() -> Any:
    return Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class ImageStatus(StrEnum):
    NONE = "none"
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class Recipe(SQLModel, table=True):
    __tablename__ = "recipes"
    __table_args__ = (
        Index("ix_recipes_created_at_id", "created_at", "id"),
        Index("ix_recipes_avg_rating_id", "avg_rating", "id"),
        Index("ix_recipes_rating_count_id", "rating_count", "id"),
        Index("ix_recipes_title_id", "title", "id"),
        Index("ix_recipes_seller_username", "seller_username"),
        Index("ix_recipes_seller_id", "seller_id"),
        Index("ix_recipes_search_vector", "search_vector", postgresql_using="gin"),
    )

    id: int | None = Field(default=None, primary_key=True)
    seller_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    seller_username: str = Field(sa_column=Column(String(150), nullable=False))
    #: ``user.updated`` version the seller's name came from (0: from the access token).
    seller_version: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default=text("0"))
    )
    title: str = Field(sa_column=Column(String(200), nullable=False))
    description: str = Field(
        default="", sa_column=Column(Text, nullable=False, server_default=text("''"))
    )
    ingredients: str = Field(
        default="", sa_column=Column(Text, nullable=False, server_default=text("''"))
    )
    instructions: str = Field(
        default="", sa_column=Column(Text, nullable=False, server_default=text("''"))
    )
    avg_rating: float = Field(
        default=0.0, sa_column=Column(Float, nullable=False, server_default=text("0"))
    )
    rating_count: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default=text("0"))
    )
    rating_sum: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0"))
    )
    image_status: str = Field(
        default=ImageStatus.NONE,
        sa_column=Column(String(16), nullable=False, server_default=text("'none'")),
    )
    image_version: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default=text("0"))
    )
    image_failure_reason: str | None = Field(default=None, sa_column=Column(Text))
    resized_image_url: str | None = Field(default=None, sa_column=Column(Text))
    #: The media service's full-size copy without metadata (``ORIGINAL_IMAGE_VARIANT``), never
    #: the upload: the original API's field name. None until an image is ready.
    original_image: str | None = Field(default=None, sa_column=Column(Text))
    image_variants: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    )
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
    search_vector: str | None = Field(
        default=None,
        sa_column=Column(TSVECTOR, Computed(SEARCH_VECTOR_SQL, persisted=True)),
    )


def without_search_vector() -> LoaderOption:
    """Load option: the tsvector is for searching in SQL, never worth sending to Python."""
    return defer(cast("QueryableAttribute[Any]", Recipe.search_vector))


class Rating(SQLModel, table=True):
    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("recipe_id", "user_id", name="uq_ratings_recipe_user"),
        Index("ix_ratings_user_id", "user_id"),
        Index("ix_ratings_recipe_created", "recipe_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    recipe_id: int = Field(
        sa_column=Column(Integer, ForeignKey("recipes.id", ondelete="CASCADE"), nullable=False)
    )
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    username: str = Field(sa_column=Column(String(150), nullable=False))
    user_version: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default=text("0"))
    )
    score: int = Field(sa_column=Column(SmallInteger, nullable=False))
    #: The score the last change replaced (None for a first rating): the upsert returns it.
    previous_score: int | None = Field(default=None, sa_column=Column(SmallInteger))
    comment: str = Field(
        default="", sa_column=Column(Text, nullable=False, server_default=text("''"))
    )
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class RecipeListVersion(SQLModel, table=True):
    """One shard of the recipe list's version, bumped by a trigger on ``recipes`` at commit."""

    __tablename__ = "recipe_list_versions"

    shard: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    version: int = Field(sa_column=Column(BigInteger, nullable=False))


class RecipeCountShard(SQLModel, table=True):
    """One shard of the number of recipes, moved by triggers on ``recipes`` (migration 0007)."""

    __tablename__ = "recipe_count_shards"

    shard: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    recipes: int = Field(sa_column=Column(BigInteger, nullable=False))


class RecipeImage(SQLModel, table=True):
    """An uploaded original, kept until the media service reports on its version."""

    __tablename__ = "recipe_images"

    recipe_id: int = Field(
        sa_column=Column(Integer, ForeignKey("recipes.id", ondelete="CASCADE"), primary_key=True)
    )
    image_version: int = Field(sa_column=Column(Integer, primary_key=True))
    sha256: str = Field(sa_column=Column(String(64), nullable=False))
    size: int = Field(sa_column=Column(Integer, nullable=False))
    content_type: str = Field(sa_column=Column(String(32), nullable=False))
    #: Stored EXTERNAL (migration 0003): images are compressed already, pglz only burns CPU.
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = _timestamp()
