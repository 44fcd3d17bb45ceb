"""Every event of the platform, one frozen model per (type, version).

A model's ``event_type`` is also its routing key. Adding an optional field keeps a version;
removing or retyping a field is a new version (the JSON Schema snapshots in the tests catch it).
Consumers ignore fields they do not know (tolerant reader).
"""

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class UserRole(StrEnum):
    CUSTOMER = "customer"
    SELLER = "seller"


class Event(BaseModel):
    """Base of every event payload."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    event_version: ClassVar[int] = 1


class UserSnapshot(Event):
    """What other services may know about a user: never a password hash.

    Version 2 made ``email`` optional (the original API registers users without one: they get
    no mail until they add one). Version 1 (email required) still parses, as a subclass, so
    messages queued or dead-lettered before the change are handled by the same handlers.
    Deploy the consumers before auth starts publishing version 2.
    """

    event_version: ClassVar[int] = 2

    user_id: int
    username: str
    email: str | None
    role: UserRole
    is_active: bool = True
    date_joined: AwareDatetime
    updated_at: AwareDatetime
    #: Grows with every change; a consumer applies a snapshot only when it is newer.
    version: int = Field(ge=1)


class UserRegistered(UserSnapshot):
    event_type: ClassVar[str] = "user.registered"


class UserUpdated(UserSnapshot):
    event_type: ClassVar[str] = "user.updated"


class UserRegisteredV1(UserRegistered):
    # Version 1, email required (a comment: a docstring would change the snapshot).

    model_config = ConfigDict(title="UserRegistered")
    event_version: ClassVar[int] = 1

    email: str


class UserUpdatedV1(UserUpdated):
    # Version 1, email required (a comment: a docstring would change the snapshot).

    model_config = ConfigDict(title="UserUpdated")
    event_version: ClassVar[int] = 1

    email: str


class UserDeleted(Event):
    event_type: ClassVar[str] = "user.deleted"

    user_id: int
    username: str
    version: int = Field(ge=1)
    deleted_at: AwareDatetime


class ImageReference(BaseModel):
    """Where the media service fetches an original image: the bytes never travel in a message."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    image_version: int = Field(ge=1)
    url: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=1)
    content_type: Literal["image/jpeg", "image/png", "image/webp", "image/gif"]
    expires_at: AwareDatetime


class RecipeSnapshot(Event):
    recipe_id: int
    seller_id: int
    seller_username: str
    title: str
    description: str = ""
    created_at: AwareDatetime
    updated_at: AwareDatetime
    #: Present when this change brought a new image to process.
    image: ImageReference | None = None


class RecipeCreated(RecipeSnapshot):
    event_type: ClassVar[str] = "recipe.created"


class RecipeUpdated(RecipeSnapshot):
    event_type: ClassVar[str] = "recipe.updated"


class RecipeDeleted(Event):
    event_type: ClassVar[str] = "recipe.deleted"

    recipe_id: int
    seller_id: int
    deleted_at: AwareDatetime


class RatingAdded(Event):
    """A customer rated a recipe (first time or a new score); aggregates are after the change."""

    event_type: ClassVar[str] = "rating.added"

    rating_id: int
    recipe_id: int
    recipe_title: str
    seller_id: int
    user_id: int
    username: str
    score: int = Field(ge=1, le=5)
    previous_score: int | None = Field(default=None, ge=1, le=5)
    avg_rating: float
    rating_count: int
    rated_at: AwareDatetime


class RatingRemoved(Event):
    """A rating went away (its author was deleted); aggregates are after the change."""

    event_type: ClassVar[str] = "rating.removed"

    rating_id: int
    recipe_id: int
    user_id: int
    score: int = Field(ge=1, le=5)
    avg_rating: float
    rating_count: int
    removed_at: AwareDatetime


#: The variant whose URL a recipe shows as ``original_image``: the upload at full size, every
#: piece of metadata (EXIF, GPS, comments) stripped. The upload itself is never published.
ORIGINAL_IMAGE_VARIANT = "original"


class ImageVariant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    url: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    format: Literal["jpeg", "webp"]
    bytes: int = Field(ge=1)


class RecipeImageReady(Event):
    event_type: ClassVar[str] = "recipe.image_ready"

    recipe_id: int
    image_version: int = Field(ge=1)
    resized_image_url: str
    variants: tuple[ImageVariant, ...]


class RecipeImageFailed(Event):
    event_type: ClassVar[str] = "recipe.image_failed"

    recipe_id: int
    image_version: int = Field(ge=1)
    #: Written for the seller: what was wrong with the file.
    reason: str


class ScheduleTick(Event):
    """One scheduled slot of one cron job; (job, slot) identifies it across replicas."""

    event_type: ClassVar[str] = "schedule.tick"

    job: str
    slot: AwareDatetime
    cron: str


EVENT_MODELS: dict[tuple[str, int], type[Event]] = {
    (model.event_type, model.event_version): model
    for model in (
        UserRegisteredV1,
        UserUpdatedV1,
        UserRegistered,
        UserUpdated,
        UserDeleted,
        RecipeCreated,
        RecipeUpdated,
        RecipeDeleted,
        RatingAdded,
        RatingRemoved,
        RecipeImageReady,
        RecipeImageFailed,
        ScheduleTick,
    )
}
