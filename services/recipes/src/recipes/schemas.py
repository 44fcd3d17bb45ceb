"""Request and response models of the API (the original Django REST API's field names)."""

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from contracts import ImageVariant


def _no_null_characters(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it here rather than fail in the database.
    if "\x00" in value:
        raise ValueError("Null characters are not allowed.")
    return value


#: Text that can be stored in PostgreSQL.
Text = Annotated[str, AfterValidator(_no_null_characters)]

Ordering = Literal["-created_at", "created_at", "-avg_rating", "-rating_count", "title", "popular"]


class RecipeWrite(BaseModel):
    """What a seller may set; anything else in the body (avg_rating, seller...) is ignored."""

    model_config = ConfigDict(extra="ignore")

    title: Text = Field(min_length=1, max_length=200)
    description: Text = Field(default="", max_length=20_000)
    ingredients: Text = Field(default="", max_length=20_000)
    instructions: Text = Field(default="", max_length=50_000)


class RecipePatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: Text | None = Field(default=None, min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=20_000)
    ingredients: Text | None = Field(default=None, max_length=20_000)
    instructions: Text | None = Field(default=None, max_length=50_000)


class RatingWrite(BaseModel):
    model_config = ConfigDict(extra="ignore")

    score: int = Field(ge=1, le=5)
    comment: Text = Field(default="", max_length=5_000)


class RecipeListQuery(BaseModel):
    """Page, filters, ordering and search of ``GET /api/recipes/``."""

    model_config = ConfigDict(extra="ignore")

    #: Strings on purpose: DRF answers a bad page with 404 and ignores a bad page size.
    page: str | None = None
    page_size: str | None = None

    seller: Text | None = Field(default=None, max_length=150, description="Seller's username.")
    min_rating: float | None = Field(default=None, ge=0, le=5)
    created_after: datetime | None = None
    created_before: datetime | None = None
    ordering: Ordering | None = Field(
        default=None, description="Default -created_at; by rank when q is given."
    )
    q: Text | None = Field(default=None, max_length=200, description="Full-text search.")

    @field_validator("created_after", "created_before")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class RecipeOut(BaseModel):
    id: int
    title: str
    description: str
    ingredients: str
    instructions: str
    resized_image_url: str | None
    #: A full-size copy without metadata, made by the media service (never the upload itself);
    #: null until the first image is ready.
    original_image: str | None = None
    avg_rating: float
    rating_count: int
    seller_id: int
    seller_username: str
    created_at: datetime
    updated_at: datetime
    image_status: Literal["none", "pending", "ready", "failed"]
    image_version: int
    image_variants: list[ImageVariant]
    #: Why the image could not be processed; shown to the recipe's seller only.
    image_failure_reason: str | None = None


class RatingOut(BaseModel):
    id: int
    recipe_id: int
    user: str = Field(description="The customer's username.")
    user_id: int
    score: int
    comment: str
    created_at: datetime
    updated_at: datetime


class RateResult(RatingOut):
    """A rating and its recipe's aggregates right after it was applied."""

    avg_rating: float
    rating_count: int


class RecipePage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[RecipeOut]


class RatingPage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[RatingOut]
