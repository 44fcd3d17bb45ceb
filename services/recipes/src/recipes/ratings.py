"""Rating use cases: one rating per customer and recipe, aggregates kept exact in SQL.

Every change first locks the recipe row (``SELECT ... FOR UPDATE``). That serialises the ratings
of one recipe, which the aggregate ``UPDATE`` would do anyway, and makes the read of the previous
score trustworthy: without it, two first ratings by the same customer arriving together would both
see "no previous rating" and count twice. The aggregates then move by the difference only
(``rating_sum + delta``, ``rating_count + 1`` for a first rating): no recount, no lost update.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Float, case, cast, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts import RatingAdded, RatingRemoved, UserDeleted
from recipes.models import Rating, Recipe, utcnow
from recipes.service import Publish, RecipeNotFound
from servicekit.tokens import Principal


@dataclass(frozen=True)
class RatingOutcome:
    rating_id: int
    recipe_id: int
    user_id: int
    username: str
    score: int
    comment: str
    created_at: datetime
    updated_at: datetime
    previous_score: int | None
    avg_rating: float
    rating_count: int


async def rate_recipe(
    *,
    session: AsyncSession,
    recipe_id: int,
    customer: Principal,
    score: int,
    comment: str,
    publish: Publish,
) -> RatingOutcome:
    """Add or replace ``customer``'s rating and move the recipe's aggregates by the difference."""
    title, seller_id = await _lock_recipe(session, recipe_id)
    previous = await session.scalar(
        select(col(Rating.score)).where(
            col(Rating.recipe_id) == recipe_id,
            col(Rating.user_id) == customer.user_id,
        )
    )
    now = utcnow()
    values = {"username": customer.username, "score": score, "comment": comment, "updated_at": now}
    inserted = (
        await session.execute(
            insert(Rating)
            .values(recipe_id=recipe_id, user_id=customer.user_id, created_at=now, **values)
            .on_conflict_do_update(constraint="uq_ratings_recipe_user", set_=values)
            .returning(col(Rating.id), col(Rating.created_at))
        )
    ).one()
    avg_rating, rating_count = await _move_aggregates(
        session, recipe_id, delta=score - (previous or 0), added=1 if previous is None else 0
    )
    outcome = RatingOutcome(
        rating_id=inserted.id,
        recipe_id=recipe_id,
        user_id=customer.user_id,
        username=customer.username,
        score=score,
        comment=comment,
        created_at=inserted.created_at,
        updated_at=now,
        previous_score=previous,
        avg_rating=avg_rating,
        rating_count=rating_count,
    )
    await publish(_rating_added(outcome, recipe_title=title, seller_id=seller_id))
    return outcome


async def _lock_recipe(session: AsyncSession, recipe_id: int) -> tuple[str, int]:
    """Lock the recipe row for this transaction; its title and seller."""
    recipe = (
        await session.execute(
            select(col(Recipe.title), col(Recipe.seller_id))
            .where(col(Recipe.id) == recipe_id)
            .with_for_update()
        )
    ).one_or_none()
    if recipe is None:
        raise RecipeNotFound()
    return recipe.title, recipe.seller_id


async def _move_aggregates(
    session: AsyncSession, recipe_id: int, *, delta: int, added: int
) -> tuple[float, int]:
    """Shift sum and count in SQL (never a recount); the new average and count."""
    avg_rating, rating_count = (
        await session.execute(
            update(Recipe)
            .where(col(Recipe.id) == recipe_id)
            .values(
                rating_sum=col(Recipe.rating_sum) + delta,
                rating_count=col(Recipe.rating_count) + added,
                avg_rating=cast(col(Recipe.rating_sum) + delta, Float)
                / (col(Recipe.rating_count) + added),
            )
            .returning(col(Recipe.avg_rating), col(Recipe.rating_count))
        )
    ).one()
    return avg_rating, rating_count


def _rating_added(outcome: RatingOutcome, *, recipe_title: str, seller_id: int) -> RatingAdded:
    return RatingAdded(
        rating_id=outcome.rating_id,
        recipe_id=outcome.recipe_id,
        recipe_title=recipe_title,
        seller_id=seller_id,
        user_id=outcome.user_id,
        username=outcome.username,
        score=outcome.score,
        previous_score=outcome.previous_score,
        avg_rating=outcome.avg_rating,
        rating_count=outcome.rating_count,
        rated_at=outcome.updated_at,
    )


async def remove_users_ratings(
    *, session: AsyncSession, event: UserDeleted, publish: Publish
) -> int:
    """Delete a deleted customer's ratings, taking each score out of its recipe's aggregates."""
    rated = select(col(Rating.recipe_id)).where(col(Rating.user_id) == event.user_id)
    # Lock in id order so that two removals never deadlock each other.
    await session.execute(
        select(col(Recipe.id))
        .where(col(Recipe.id).in_(rated))
        .order_by(col(Recipe.id))
        .with_for_update()
    )
    removed = (
        await session.execute(
            delete(Rating)
            .where(col(Rating.user_id) == event.user_id)
            .returning(col(Rating.id), col(Rating.recipe_id), col(Rating.score))
        )
    ).all()
    for rating_id, recipe_id, score in removed:
        remaining = col(Recipe.rating_count) - 1
        remaining_sum = col(Recipe.rating_sum) - score
        avg_rating, rating_count = (
            await session.execute(
                update(Recipe)
                .where(col(Recipe.id) == recipe_id)
                .values(
                    rating_sum=remaining_sum,
                    rating_count=remaining,
                    avg_rating=case(
                        (remaining == 0, 0.0),
                        else_=cast(col(Recipe.rating_sum) - score, Float)
                        / func.nullif(remaining, 0),
                    ),
                )
                .returning(col(Recipe.avg_rating), col(Recipe.rating_count))
            )
        ).one()
        await publish(
            RatingRemoved(
                rating_id=rating_id,
                recipe_id=recipe_id,
                user_id=event.user_id,
                score=score,
                avg_rating=avg_rating,
                rating_count=rating_count,
                removed_at=event.deleted_at,
            )
        )
    return len(removed)


async def list_ratings(
    *, session: AsyncSession, recipe_id: int, offset: int, limit: int
) -> tuple[int, list[Rating]]:
    """One page of a recipe's ratings, newest first, and their total."""
    exists = await session.scalar(select(col(Recipe.id)).where(col(Recipe.id) == recipe_id))
    if exists is None:
        raise RecipeNotFound()
    total = await session.scalar(
        select(func.count()).select_from(Rating).where(col(Rating.recipe_id) == recipe_id)
    )
    rows = await session.scalars(
        select(Rating)
        .where(col(Rating.recipe_id) == recipe_id)
        .order_by(col(Rating.created_at).desc(), col(Rating.id).desc())
        .offset(offset)
        .limit(limit)
    )
    return total or 0, list(rows)
