"""What a digest says: new recipes since the last digest, the week's best-rated recipes and,
for a seller, the ratings their recipes received since the last digest.

Everything is read "as of" the digest's slot, so a digest resumed hours later says the same as
it would have at 06:00, and the next digest starts exactly where this one ended. The sections
shared by many users are cached per window for one dispatcher run.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from notifier.models import Rating, Recipe

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class NewRecipe:
    recipe_id: int
    title: str
    seller_id: int
    seller_username: str


@dataclass(frozen=True)
class TopRecipe:
    recipe_id: int
    title: str
    average: float
    ratings: int


@dataclass(frozen=True)
class ReceivedRating:
    recipe_id: int
    recipe_title: str
    username: str
    score: int


@dataclass(frozen=True)
class DigestContent:
    new_recipes: tuple[NewRecipe, ...]
    best_rated: tuple[TopRecipe, ...]
    received_ratings: tuple[ReceivedRating, ...]

    @property
    def is_empty(self) -> bool:
        return not (self.new_recipes or self.best_rated or self.received_ratings)


class DigestMaterial:
    """Reads digest sections; shared sections are cached (one instance per dispatcher run)."""

    _CACHE_LIMIT = 1000

    def __init__(self, *, list_limit: int) -> None:
        self._limit = list_limit
        self._new: dict[tuple[datetime, datetime], tuple[NewRecipe, ...]] = {}
        self._best: dict[datetime, tuple[TopRecipe, ...]] = {}

    async def digest_for(
        self,
        session: AsyncSession,
        *,
        user_id: int,
        is_seller: bool,
        since: datetime,
        as_of: datetime,
    ) -> DigestContent:
        new = await self.new_recipes(session, since=since, as_of=as_of)
        received: tuple[ReceivedRating, ...] = ()
        if is_seller:
            received = await self.received_ratings(
                session, seller_id=user_id, since=since, as_of=as_of
            )
        return DigestContent(
            new_recipes=tuple(r for r in new if r.seller_id != user_id)[: self._limit],
            best_rated=await self.best_rated(session, as_of=as_of),
            received_ratings=received,
        )

    async def new_recipes(
        self, session: AsyncSession, *, since: datetime, as_of: datetime
    ) -> tuple[NewRecipe, ...]:
        key = (since, as_of)
        if key not in self._new:
            rows = await session.execute(
                select(Recipe)
                .where(
                    col(Recipe.created_at) > since,
                    col(Recipe.created_at) <= as_of,
                    ~col(Recipe.deleted),
                )
                .order_by(col(Recipe.created_at).desc(), col(Recipe.recipe_id).desc())
                .limit(self._limit + 1)  # one more: a seller's own recipe is left out
            )
            self._remember(self._new)
            self._new[key] = tuple(
                NewRecipe(r.recipe_id, r.title, r.seller_id, r.seller_username)
                for r in rows.scalars()
            )
        return self._new[key]

    async def best_rated(self, session: AsyncSession, *, as_of: datetime) -> tuple[TopRecipe, ...]:
        """Recipes by their average score among the ratings of the seven days before ``as_of``."""
        if as_of not in self._best:
            average = func.avg(col(Rating.score))
            count = func.count()
            rows = await session.execute(
                select(col(Rating.recipe_id), func.max(col(Rating.recipe_title)), average, count)
                .outerjoin(Recipe, col(Recipe.recipe_id) == col(Rating.recipe_id))
                .where(
                    col(Rating.rated_at) > as_of - WEEK,
                    col(Rating.rated_at) <= as_of,
                    func.coalesce(col(Recipe.deleted), False).is_(False),
                )
                .group_by(col(Rating.recipe_id))
                .order_by(average.desc(), count.desc(), col(Rating.recipe_id))
                .limit(self._limit)
            )
            self._remember(self._best)
            self._best[as_of] = tuple(
                TopRecipe(recipe_id, title, round(float(avg), 2), int(n))
                for recipe_id, title, avg, n in rows
            )
        return self._best[as_of]

    async def received_ratings(
        self, session: AsyncSession, *, seller_id: int, since: datetime, as_of: datetime
    ) -> tuple[ReceivedRating, ...]:
        rows = await session.execute(
            select(Rating)
            .outerjoin(Recipe, col(Recipe.recipe_id) == col(Rating.recipe_id))
            .where(
                col(Rating.seller_id) == seller_id,
                col(Rating.rated_at) > since,
                col(Rating.rated_at) <= as_of,
                func.coalesce(col(Recipe.deleted), False).is_(False),
            )
            .order_by(col(Rating.rated_at).desc(), col(Rating.rating_id).desc())
            .limit(self._limit)
        )
        return tuple(
            ReceivedRating(r.recipe_id, r.recipe_title, r.username, r.score) for r in rows.scalars()
        )

    def _remember(self, cache: dict[Any, Any]) -> None:
        if len(cache) >= self._CACHE_LIMIT:
            cache.clear()
