"""Rating use cases: one rating per customer and recipe, aggregates kept exact in SQL.

A rating is ONE statement (``_RATE``): the upsert of the rating, the recipe's aggregates moved by
the difference (``rating_sum + score - previous``, ``rating_count + 1`` for a first rating) and
the ``rating.added`` outbox row with its ``NOTIFY``, so the recipe row is locked only from that
statement to the commit: one round trip, never more through a busy event loop (issue 20; it was
the aggregate, then the outbox row, then the commit). The event carries the new aggregates, so
the statement fills them into the envelope that ``servicekit.outbox_row`` prepared (with
zeros in their place). It is exact because the previous score comes from the upsert itself, not
from a separate read:

- ``INSERT ... ON CONFLICT DO UPDATE`` acts on the latest committed row, not on the statement's
  snapshot: a second first rating by the same customer waits for the first one's commit and
  then takes the update path. The update writes the replaced score into ``previous_score`` and
  returns it, under the rating row's lock. A first rating returns ``previous_score`` NULL, so
  the same customer's first rating arriving twice at once counts once.
- ``UPDATE recipes SET rating_sum = rating_sum + delta`` waits for the recipe row's lock and then
  re-reads the latest row (READ COMMITTED), so concurrent ratings of one recipe never lose an
  update; the row lock serialises them until commit. (Before it re-reads, PostgreSQL computes
  and checks a new row from the stale one, so that expression must not fail on it:
  ``tests/integration/test_ratings.py`` forces each of these interleavings.)
- A rating locks its rating row, then its recipe; ``remove_users_ratings`` locks recipes, then
  ratings, but only the deleted user's: the two can only meet (and PostgreSQL then aborts one as
  a deadlock, to be retried) if a user rates while being deleted.
"""

from dataclasses import dataclass
from datetime import datetime

from psycopg.errors import ForeignKeyViolation
from sqlalchemy import Float, bindparam, case, cast, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts import RatingAdded, RatingRemoved, UserDeleted
from recipes.listing import PageRequest
from recipes.models import Rating, Recipe
from recipes.service import Publish, RecipeNotFound
from recipes.settings import SERVICE_NAME
from servicekit import NOTIFY_CHANNEL, Principal, hold_writer, outbox_row, utcnow


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


#: Upsert the rating, move the recipe's aggregates by the difference, announce it (docstring).
_RATE = text("""
WITH upserted AS (
    INSERT INTO ratings AS r
        (recipe_id, user_id, username, score, comment, previous_score, created_at, updated_at)
    SELECT id, :user_id, :username, :score, :comment, NULL, :now, :now
    FROM recipes WHERE id = :recipe_id
    ON CONFLICT ON CONSTRAINT uq_ratings_recipe_user DO UPDATE SET
        username = EXCLUDED.username,
        score = EXCLUDED.score,
        comment = EXCLUDED.comment,
        previous_score = r.score,
        updated_at = EXCLUDED.updated_at
    RETURNING r.id, r.recipe_id, r.score, r.previous_score, r.created_at
),
change AS (
    SELECT recipe_id, id, created_at, previous_score,
           score - coalesce(previous_score, 0) AS delta,
           CASE WHEN previous_score IS NULL THEN 1 ELSE 0 END AS added
    FROM upserted
),
rated AS (
    UPDATE recipes SET
        rating_sum = rating_sum + change.delta,
        rating_count = rating_count + change.added,
        -- PostgreSQL first computes (and checks) the new row from the row of the statement's
        -- snapshot, which may be stale (no ratings where the latest row has one), before it
        -- finds the newer row and computes it again: that discarded first row must not fail.
        avg_rating = coalesce(
            (rating_sum + change.delta)::float8 / nullif(rating_count + change.added, 0), 0
        )
    FROM change
    WHERE recipes.id = change.recipe_id
    RETURNING change.id, change.created_at, change.previous_score,
              recipes.avg_rating, recipes.rating_count, recipes.title, recipes.seller_id
),
announced AS (
    INSERT INTO outbox_messages (event_id, routing_key, envelope, headers, created_at)
    SELECT :event_id, :routing_key,
           jsonb_set(
               CAST(:envelope AS jsonb),
               '{payload}',
               CAST(:envelope AS jsonb) -> 'payload' || jsonb_build_object(
                   'rating_id', rated.id,
                   'recipe_title', rated.title,
                   'seller_id', rated.seller_id,
                   'previous_score', rated.previous_score,
                   'avg_rating', rated.avg_rating,
                   'rating_count', rated.rating_count
               )
           ),
           CAST(:headers AS jsonb), :created_at
    FROM rated
    RETURNING event_id
)
SELECT rated.*, pg_notify(:channel, '') AS notified FROM rated, announced
""").bindparams(bindparam("envelope", type_=JSONB), bindparam("headers", type_=JSONB))


async def rate_recipe(
    *,
    session: AsyncSession,
    recipe_id: int,
    customer: Principal,
    score: int,
    comment: str,
) -> RatingOutcome:
    """Add or replace ``customer``'s rating and move the recipe's aggregates by the difference."""
    await hold_writer(session, customer.user_id)
    now = utcnow()
    # The statement fills in what only it knows (the zeros here); see the module docstring.
    announcement = outbox_row(
        RatingAdded(
            rating_id=0,
            recipe_id=recipe_id,
            recipe_title="",
            seller_id=0,
            user_id=customer.user_id,
            username=customer.username,
            score=score,
            previous_score=None,
            avg_rating=0.0,
            rating_count=0,
            rated_at=now,
        ),
        producer=SERVICE_NAME,
    )
    try:
        rated = (
            await session.execute(
                _RATE,
                {
                    "recipe_id": recipe_id,
                    "user_id": customer.user_id,
                    "username": customer.username,
                    "score": score,
                    "comment": comment,
                    "now": now,
                    "channel": NOTIFY_CHANNEL,
                    **announcement,
                },
            )
        ).one_or_none()
    except IntegrityError as exc:
        if not isinstance(exc.orig, ForeignKeyViolation):
            raise
        # The recipe was deleted between the statement's snapshot and its foreign-key check.
        raise RecipeNotFound() from exc
    if rated is None:
        raise RecipeNotFound()
    return RatingOutcome(
        rating_id=rated.id,
        recipe_id=recipe_id,
        user_id=customer.user_id,
        username=customer.username,
        score=score,
        comment=comment,
        created_at=rated.created_at,
        updated_at=now,
        previous_score=rated.previous_score,
        avg_rating=rated.avg_rating,
        rating_count=rated.rating_count,
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
    *, session: AsyncSession, recipe_id: int, page: PageRequest
) -> tuple[PageRequest, int, list[Rating]]:
    """One page of a recipe's ratings, newest first, the page resolved and the total.

    404 past the last page (page 1 always exists).
    """
    exists = await session.scalar(select(col(Recipe.id)).where(col(Recipe.id) == recipe_id))
    if exists is None:
        raise RecipeNotFound()
    total = await session.scalar(
        select(func.count()).select_from(Rating).where(col(Rating.recipe_id) == recipe_id)
    )
    page = page.resolved(total or 0)
    page.check(total or 0)
    rows = await session.scalars(
        select(Rating)
        .where(col(Rating.recipe_id) == recipe_id)
        .order_by(col(Rating.created_at).desc(), col(Rating.id).desc())
        .offset(page.offset)
        .limit(page.size)
    )
    return page, total or 0, list(rows)
