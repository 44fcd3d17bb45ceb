"""The recipe list: filters, ordering, full-text search and DRF-style page numbers.

A list request runs exactly two queries whatever the page size: the count and the page.
``popular`` orders by the Bayesian weighted rating (the IMDb formula)
``(v·R + m·C) / (v + m)`` = ``(rating_sum + m·C) / (rating_count + m)``, where C, the mean of
every vote on the site, is an uncorrelated subquery PostgreSQL evaluates once per query.
"""

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, cast, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from recipes.models import SEARCH_CONFIG, Recipe, without_search_vector
from recipes.schemas import RecipeListQuery
from servicekit.errors import NotFound

#: The search configuration as SQL (a constant; user input is always a bound parameter).
_REGCONFIG: ColumnElement[Any] = literal_column(f"'{SEARCH_CONFIG}'::regconfig")


class InvalidPage(NotFound):
    def __init__(self) -> None:
        super().__init__("Invalid page.")


@dataclass(frozen=True)
class PageRequest:
    number: int
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    def check(self, total: int) -> None:
        """Page 1 always exists (maybe empty); any other page must hold results."""
        if self.number > max(1, math.ceil(total / self.size)):
            raise InvalidPage()

    def has_next(self, total: int) -> bool:
        return self.number * self.size < total


def page_request(
    page: str | None, page_size: str | None, *, default_size: int, max_size: int
) -> PageRequest:
    """Parse ``page``/``page_size`` the way DRF does: a bad page is 404, a bad size the default."""
    try:
        number = int(page) if page not in (None, "", "last") else 1
    except ValueError:
        raise InvalidPage() from None
    if number < 1:
        raise InvalidPage()
    try:
        size = int(page_size) if page_size else default_size
    except ValueError:
        size = default_size
    size = default_size if size < 1 else min(size, max_size)
    return PageRequest(number=number, size=size)


def _filters(query: RecipeListQuery, ts_query: Any) -> list[ColumnElement[bool]]:
    table = Recipe.__table__.c  # type: ignore[attr-defined]
    filters: list[ColumnElement[bool]] = []
    if query.seller:
        filters.append(table.seller_username == query.seller)
    if query.min_rating is not None:
        filters.append(table.avg_rating >= query.min_rating)
    if query.created_after is not None:
        filters.append(table.created_at >= query.created_after)
    if query.created_before is not None:
        filters.append(table.created_at <= query.created_before)
    if ts_query is not None:
        filters.append(table.search_vector.op("@@")(ts_query))
    return filters


def _ordering(query: RecipeListQuery, ts_query: Any, popular_min_votes: int) -> list[Any]:
    table = Recipe.__table__.c  # type: ignore[attr-defined]
    ordering = query.ordering or ("rank" if ts_query is not None else "-created_at")
    if ordering == "rank":
        return [func.ts_rank(table.search_vector, ts_query).desc(), table.id.desc()]
    if ordering == "popular":
        site_mean = select(
            cast(func.sum(table.rating_sum), Float) / func.nullif(func.sum(table.rating_count), 0)
        ).scalar_subquery()
        m = popular_min_votes
        weighted = (table.rating_sum + m * func.coalesce(site_mean, 0.0)) / (table.rating_count + m)
        return [weighted.desc(), table.id.desc()]
    column = {
        "-created_at": table.created_at.desc(),
        "created_at": table.created_at.asc(),
        "-avg_rating": table.avg_rating.desc(),
        "-rating_count": table.rating_count.desc(),
        "title": table.title.asc(),
    }[ordering]
    tie_break = table.id.asc() if ordering in ("created_at", "title") else table.id.desc()
    return [column, tie_break]


async def list_recipes(
    *,
    session: AsyncSession,
    query: RecipeListQuery,
    page: PageRequest,
    popular_min_votes: int,
) -> tuple[int, list[Recipe]]:
    """The total matching ``query`` and the recipes of ``page`` (404 past the last page)."""
    ts_query = (
        func.websearch_to_tsquery(_REGCONFIG, query.q) if query.q and query.q.strip() else None
    )
    filters = _filters(query, ts_query)
    total = await session.scalar(select(func.count()).select_from(Recipe).where(*filters)) or 0
    page.check(total)
    rows = await session.scalars(
        select(Recipe)
        .where(*filters)
        .order_by(*_ordering(query, ts_query, popular_min_votes))
        .offset(page.offset)
        .limit(page.size)
        .options(without_search_vector())
    )
    return total, list(rows)
