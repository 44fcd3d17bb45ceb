"""Keeping the notifier's own copies of users, recipes and ratings from their events.

Every write is an idempotent upsert guarded by a version or a timestamp, so redeliveries and
events arriving out of order leave the newest state.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts import RatingAdded, RecipeCreated, RecipeDeleted, UserDeleted
from contracts.events import UserSnapshot
from notifier.models import (
    Delivery,
    DeliveryStatus,
    MailKind,
    Preference,
    Rating,
    Recipe,
    Recipient,
)
from servicekit import utcnow


async def apply_user(*, session: AsyncSession, event: UserSnapshot) -> bool:
    """Insert or update the recipient copy if ``event`` is newer; True when it was applied."""
    values: dict[str, Any] = {
        "username": event.username,
        "email": event.email,
        "role": event.role.value,
        "active": event.is_active,
        "version": event.version,
        "deleted": False,
        "updated_at": utcnow(),
    }
    stmt = insert(Recipient).values(user_id=event.user_id, bouncing=False, **values)
    # A new address is a new chance: a bounce belonged to the old one.
    values["bouncing"] = and_(
        col(Recipient.bouncing), col(Recipient.email).is_not_distinct_from(stmt.excluded.email)
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[col(Recipient.user_id)],
        set_=values,
        where=col(Recipient.version) < event.version,
    )
    return await session.scalar(upsert.returning(col(Recipient.user_id))) is not None


async def apply_user_deleted(*, session: AsyncSession, event: UserDeleted) -> None:
    """Tombstone the copy (an older update arriving late must not bring the user back), drop
    the user's preferences and skip their pending mail."""
    stmt = insert(Recipient).values(
        user_id=event.user_id,
        username=event.username,
        email="",
        role="customer",
        active=False,
        version=event.version,
        deleted=True,
        updated_at=utcnow(),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[col(Recipient.user_id)],
        set_={"deleted": True, "active": False, "version": event.version, "updated_at": utcnow()},
        where=col(Recipient.version) < event.version,
    )
    await session.execute(stmt)
    await session.execute(delete(Preference).where(col(Preference.user_id) == event.user_id))
    await session.execute(
        update(Delivery)
        .where(
            col(Delivery.user_id) == event.user_id,
            col(Delivery.status) == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.SKIPPED, error="user deleted")
    )


async def queue_welcome(*, session: AsyncSession, user_id: int, at: datetime) -> None:
    """Plan the welcome mail for a user the copy knows as active; the dispatcher sends it.

    Called for every ``user.registered``, whether or not it changed the copy: a newer
    ``user.updated`` applied first must not cost the welcome (issue 15 item 10), while a
    tombstone or an inactive copy means there is no one to welcome. One welcome row per user
    (a unique index) makes it happen once whatever the order and the redeliveries.
    """
    live = select(
        literal(MailKind.WELCOME.value),
        col(Recipient.user_id),
        literal(at),
        literal(DeliveryStatus.PENDING.value),
    ).where(
        col(Recipient.user_id) == user_id,
        col(Recipient.active),
        col(Recipient.deleted).is_(False),
    )
    await session.execute(
        insert(Delivery)
        .from_select(["kind", "user_id", "as_of", "status"], live)
        .on_conflict_do_nothing()
    )


async def apply_recipe_created(*, session: AsyncSession, event: RecipeCreated) -> None:
    await session.execute(
        insert(Recipe)
        .values(
            recipe_id=event.recipe_id,
            seller_id=event.seller_id,
            seller_username=event.seller_username,
            title=event.title,
            created_at=event.created_at,
            deleted=False,
        )
        .on_conflict_do_nothing()
    )


async def apply_recipe_deleted(*, session: AsyncSession, event: RecipeDeleted) -> None:
    stmt = insert(Recipe).values(
        recipe_id=event.recipe_id,
        seller_id=event.seller_id,
        created_at=event.deleted_at,
        deleted=True,
    )
    await session.execute(
        stmt.on_conflict_do_update(index_elements=[col(Recipe.recipe_id)], set_={"deleted": True})
    )


async def apply_rating(*, session: AsyncSession, event: RatingAdded) -> None:
    values = {
        "recipe_id": event.recipe_id,
        "recipe_title": event.recipe_title,
        "seller_id": event.seller_id,
        "user_id": event.user_id,
        "username": event.username,
        "score": event.score,
        "rated_at": event.rated_at,
    }
    stmt = insert(Rating).values(rating_id=event.rating_id, **values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[col(Rating.rating_id)],
            set_=values,
            where=col(Rating.rated_at) < stmt.excluded.rated_at,
        )
    )
