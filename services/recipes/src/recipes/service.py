"""Recipe use cases: each writes its state change and its outbox event in the caller's transaction.

Callers open the transaction (``async with session.begin()`` in the API; the consumer's own in
handlers) and pass ``publish``, which adds an event to the outbox of that transaction.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from contracts import (
    ORIGINAL_IMAGE_VARIANT,
    Event,
    ImageReference,
    RecipeCreated,
    RecipeDeleted,
    RecipeImageFailed,
    RecipeImageReady,
    RecipeUpdated,
    UserDeleted,
    UserUpdated,
)
from recipes.images import UploadedImage, image_reference
from recipes.models import ImageStatus, Rating, Recipe, RecipeImage, without_search_vector
from recipes.schemas import RecipeOut, RecipePatch, RecipeWrite
from recipes.settings import SERVICE_NAME
from servicekit import NotFound, PermissionDenied, Principal, add_event, hold_writer, utcnow

Publish = Callable[[Event], Awaitable[Any]]


class RecipeNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Not found.")


class NotRecipeOwner(PermissionDenied):
    def __init__(self) -> None:
        super().__init__("You do not have permission to perform this action.")


def outbox_publisher(*, session: AsyncSession) -> Publish:
    """``publish`` for use cases called from the API: straight into this session's outbox."""

    async def publish(event: Event) -> None:
        await add_event(session, event, producer=SERVICE_NAME)

    return publish


@dataclass(frozen=True)
class ImageSigner:
    """Turns a stored original into the signed reference that goes into recipe events."""

    base_url: str
    key: bytes
    ttl_seconds: int

    def reference(self, original: RecipeImage) -> ImageReference:
        return image_reference(
            recipe_id=original.recipe_id,
            image_version=original.image_version,
            sha256=original.sha256,
            size=original.size,
            content_type=original.content_type,
            base_url=self.base_url,
            key=self.key,
            ttl_seconds=self.ttl_seconds,
        )


@dataclass(frozen=True)
class StoredOriginal:
    """An original as the internal image endpoint serves it."""

    data: bytes
    content_type: str
    sha256: str


def _snapshot(recipe: Recipe, image: ImageReference | None) -> dict[str, Any]:
    assert recipe.id is not None
    return {
        "recipe_id": recipe.id,
        "seller_id": recipe.seller_id,
        "seller_username": recipe.seller_username,
        "title": recipe.title,
        "description": recipe.description,
        "created_at": recipe.created_at,
        "updated_at": recipe.updated_at,
        "image": image,
    }


def _store_original(
    session: AsyncSession, recipe_id: int, version: int, image: UploadedImage
) -> RecipeImage:
    # The digest of a multi-MB upload is worth computing once: the row and the event share it.
    original = RecipeImage(
        recipe_id=recipe_id,
        image_version=version,
        sha256=image.sha256,
        size=image.size,
        content_type=image.content_type,
        data=image.data,
    )
    session.add(original)
    return original


async def create_recipe(
    *,
    session: AsyncSession,
    seller: Principal,
    fields: RecipeWrite,
    image: UploadedImage | None,
    signer: ImageSigner,
    publish: Publish,
) -> Recipe:
    """A new recipe by ``seller``; with an image, its original is stored and announced."""
    await hold_writer(session, seller.user_id)
    now = utcnow()
    recipe = Recipe(
        seller_id=seller.user_id,
        seller_username=seller.username,
        **fields.model_dump(),
        image_status=ImageStatus.PENDING if image else ImageStatus.NONE,
        image_version=1 if image else 0,
        created_at=now,
        updated_at=now,
    )
    session.add(recipe)
    await session.flush()
    assert recipe.id is not None
    reference = None
    if image is not None:
        reference = signer.reference(_store_original(session, recipe.id, 1, image))
    await publish(RecipeCreated.model_validate(_snapshot(recipe, reference)))
    return recipe


#: A recipe's public fields by id. Read on an autocommit connection in one statement: no ORM
#: session, so none of its BEGIN and ROLLBACK round trips or identity-map work (issue 20: the
#: session was most of the detail's CPU in pyinstrument).
_READ_RECIPE = select(
    *(Recipe.__table__.c[name] for name in RecipeOut.model_fields)  # type: ignore[attr-defined]
).where(col(Recipe.id) == bindparam("recipe_id"))


async def read_recipe(*, connection: AsyncConnection, recipe_id: int) -> dict[str, Any]:
    """The columns of ``RecipeOut`` for one recipe."""
    row = (await connection.execute(_READ_RECIPE, {"recipe_id": recipe_id})).mappings().first()
    if row is None:
        raise RecipeNotFound()
    return dict(row)


async def get_recipe(*, session: AsyncSession, recipe_id: int, for_update: bool = False) -> Recipe:
    query = select(Recipe).where(col(Recipe.id) == recipe_id).options(without_search_vector())
    if for_update:
        query = query.with_for_update()
    recipe = await session.scalar(query)
    if recipe is None:
        raise RecipeNotFound()
    return recipe


async def _owned_recipe(session: AsyncSession, recipe_id: int, seller: Principal) -> Recipe:
    await hold_writer(session, seller.user_id)
    recipe = await get_recipe(session=session, recipe_id=recipe_id, for_update=True)
    if recipe.seller_id != seller.user_id:
        raise NotRecipeOwner()
    return recipe


async def update_recipe(
    *,
    session: AsyncSession,
    recipe_id: int,
    seller: Principal,
    changes: RecipeWrite | RecipePatch,
    image: UploadedImage | None,
    signer: ImageSigner,
    publish: Publish,
) -> Recipe:
    """Change the owner's recipe; a new image gets the next image version."""
    recipe = await _owned_recipe(session, recipe_id, seller)
    assert recipe.id is not None
    for name, value in changes.model_dump(exclude_none=True).items():
        setattr(recipe, name, value)
    recipe.updated_at = utcnow()
    reference = None
    if image is not None:
        recipe.image_version += 1
        recipe.image_status = ImageStatus.PENDING
        recipe.image_failure_reason = None
        # Older originals are never needed again: a late result for them is ignored anyway.
        await session.execute(delete(RecipeImage).where(col(RecipeImage.recipe_id) == recipe.id))
        original = _store_original(session, recipe.id, recipe.image_version, image)
        reference = signer.reference(original)
    await session.flush()
    await publish(RecipeUpdated.model_validate(_snapshot(recipe, reference)))
    return recipe


async def delete_recipe(
    *, session: AsyncSession, recipe_id: int, seller: Principal, publish: Publish
) -> None:
    recipe = await _owned_recipe(session, recipe_id, seller)
    await session.delete(recipe)
    await session.flush()
    await publish(
        RecipeDeleted(recipe_id=recipe_id, seller_id=recipe.seller_id, deleted_at=utcnow())
    )


#: Read on the driver's own cursor in binary format: a multi-MB bytea comes back ~4x faster than
#: in the text (hex) format SQLAlchemy's cursors receive, with half the bytes on the wire.
_ORIGINAL_QUERY = (
    "SELECT data, content_type, sha256 FROM recipe_images"
    " WHERE recipe_id = %s AND image_version = %s"
)


async def get_original(
    *, session: AsyncSession, recipe_id: int, image_version: int
) -> StoredOriginal | None:
    """The stored original of this image version, if it is still kept."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert isinstance(driver, psycopg.AsyncConnection)  # the psycopg dialect's own connection
    async with driver.cursor(binary=True) as cursor:
        await cursor.execute(_ORIGINAL_QUERY, (recipe_id, image_version))
        row = await cursor.fetchone()
    if row is None:
        return None
    data, content_type, sha256 = row
    return StoredOriginal(data=data, content_type=content_type, sha256=sha256)


async def _drop_originals(session: AsyncSession, recipe_id: int, up_to_version: int) -> None:
    await session.execute(
        delete(RecipeImage).where(
            col(RecipeImage.recipe_id) == recipe_id,
            col(RecipeImage.image_version) <= up_to_version,
        )
    )


async def apply_image_ready(*, session: AsyncSession, event: RecipeImageReady) -> bool:
    """Store the processed image unless the recipe already has a newer one; True if applied."""
    applied = await session.scalar(
        update(Recipe)
        .where(
            col(Recipe.id) == event.recipe_id,
            col(Recipe.image_version) <= event.image_version,
        )
        .values(
            image_status=ImageStatus.READY,
            resized_image_url=event.resized_image_url,
            original_image=next(
                (v.url for v in event.variants if v.name == ORIGINAL_IMAGE_VARIANT), None
            ),
            image_variants=[v.model_dump(mode="json") for v in event.variants],
            image_failure_reason=None,
            updated_at=utcnow(),
        )
        .returning(col(Recipe.id))
    )
    await _drop_originals(session, event.recipe_id, event.image_version)
    return applied is not None


async def apply_image_failed(*, session: AsyncSession, event: RecipeImageFailed) -> bool:
    """Mark the pending image failed (never a newer one, never one already ready)."""
    applied = await session.scalar(
        update(Recipe)
        .where(
            col(Recipe.id) == event.recipe_id,
            col(Recipe.image_version) <= event.image_version,
            col(Recipe.image_status) == ImageStatus.PENDING,
        )
        .values(
            image_status=ImageStatus.FAILED,
            image_failure_reason=event.reason,
            updated_at=utcnow(),
        )
        .returning(col(Recipe.id))
    )
    await _drop_originals(session, event.recipe_id, event.image_version)
    return applied is not None


async def rename_user(*, session: AsyncSession, event: UserUpdated) -> None:
    """Apply a user's new name to their recipes and ratings, unless a newer one is there."""
    await session.execute(
        update(Recipe)
        .where(
            col(Recipe.seller_id) == event.user_id,
            col(Recipe.seller_version) < event.version,
        )
        .values(seller_username=event.username, seller_version=event.version)
    )
    await session.execute(
        update(Rating)
        .where(
            col(Rating.user_id) == event.user_id,
            col(Rating.user_version) < event.version,
        )
        .values(username=event.username, user_version=event.version)
    )


async def delete_sellers_recipes(
    *, session: AsyncSession, event: UserDeleted, publish: Publish
) -> int:
    """Delete every recipe of a deleted seller (their ratings go with them)."""
    rows = (
        await session.execute(
            delete(Recipe).where(col(Recipe.seller_id) == event.user_id).returning(col(Recipe.id))
        )
    ).all()
    for (recipe_id,) in rows:
        await publish(
            RecipeDeleted(recipe_id=recipe_id, seller_id=event.user_id, deleted_at=event.deleted_at)
        )
    return len(rows)
