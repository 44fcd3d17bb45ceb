"""The recipe list: filters, ordering, full-text search and DRF-style page numbers.

A list request is one statement whatever the page size, so it needs no transaction: the page,
with the count and the list version (``list_version``) as scalar subqueries in the same
snapshot as the rows; a page past the end (no rows to carry them) costs a second statement for
the count. The unfiltered list takes its count from ``recipe_count_shards`` (a sum of 16 rows
that triggers (migration 0007) keep, in the same snapshot) instead of counting the table, which at
10,000 recipes was most of PostgreSQL's work per request. The version is the
list's validator: a conditional GET reads it alone and answers 304 without the page query.
``popular`` orders by the Bayesian weighted rating (the IMDb formula)
``(v·R + m·C) / (v + m)`` = ``(rating_sum + m·C) / (rating_count + m)``, where C, the mean of
every vote on the site, is an uncorrelated subquery PostgreSQL evaluates once per query.
"""

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    RowMapping,
    Select,
    Text,
    bindparam,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from recipes.models import SEARCH_CONFIG, Recipe, RecipeCountShard, RecipeListVersion
from recipes.schemas import RecipeListQuery, RecipeOut
from servicekit import NotFound

#: The search configuration as SQL (a constant; user input is always a bound parameter).
_REGCONFIG: ColumnElement[Any] = literal_column(f"'{SEARCH_CONFIG}'::regconfig")


#: What the list shows of a recipe (the seller-only failure reason is never listed).
_LISTED = [
    Recipe.__table__.c[name]  # type: ignore[attr-defined]
    for name in RecipeOut.model_fields
    if name != "image_failure_reason"
]


class InvalidPage(NotFound):
    def __init__(self) -> None:
        super().__init__("Invalid page.")


#: Largest row offset a page may start at: SQL offsets are bound as PostgreSQL integers, and
#: no table here holds more rows, so a page beyond it is past the end whatever the count.
MAX_OFFSET = 2**31 - 1
#: ``?page=last`` names the last page (DRF's ``PageNumberPagination.last_page_strings``).
LAST_PAGE_STRINGS = ("last",)


@dataclass(frozen=True)
class PageRequest:
    number: int
    size: int
    #: ``?page=last``: the number is known once the total is (``resolved``).
    last: bool = False

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    def resolved(self, total: int) -> "PageRequest":
        """This page with ``last`` replaced by the last page's number for ``total`` results."""
        if not self.last:
            return self
        return PageRequest(number=max(1, math.ceil(total / self.size)), size=self.size)

    def check(self, total: int) -> None:
        """Page 1 always exists (maybe empty); any other page must hold results."""
        if self.number > max(1, math.ceil(total / self.size)):
            raise InvalidPage()

    def has_next(self, total: int) -> bool:
        return self.number * self.size < total


def page_request(
    page: str | None, page_size: str | None, *, default_size: int, max_size: int
) -> PageRequest:
    """Parse ``page``/``page_size`` the way DRF does: a bad page is 404, a bad size the default.

    A page whose offset could not be bound in SQL (``MAX_OFFSET``) is past the end: 404 too.
    """
    try:
        size = int(page_size) if page_size else default_size
    except ValueError:
        size = default_size
    size = default_size if size < 1 else min(size, max_size)
    if page in LAST_PAGE_STRINGS:
        return PageRequest(number=1, size=size, last=True)
    try:
        number = int(page) if page else 1
    except ValueError:
        raise InvalidPage() from None
    if not 1 <= number <= MAX_OFFSET // size + 1:
        raise InvalidPage()
    return PageRequest(number=number, size=size)


@dataclass(frozen=True)
class _Shape:
    """What the SQL of a list request looks like: its filters and its ordering.

    Statements are built once per shape, values are bound at execution: building a select of
    15 columns costs more CPU than PostgreSQL spends on the page.
    """

    seller: bool
    min_rating: bool
    created_after: bool
    created_before: bool
    search: bool
    ordering: str


def _shape(query: RecipeListQuery) -> tuple[_Shape, dict[str, Any]]:
    search = bool(query.q and query.q.strip())
    values = {
        "seller": query.seller or None,
        "min_rating": query.min_rating,
        "created_after": query.created_after,
        "created_before": query.created_before,
        "q": query.q if search else None,
    }
    shape = _Shape(
        seller=values["seller"] is not None,
        min_rating=values["min_rating"] is not None,
        created_after=values["created_after"] is not None,
        created_before=values["created_before"] is not None,
        search=search,
        ordering=query.ordering or ("rank" if search else "-created_at"),
    )
    return shape, {name: value for name, value in values.items() if value is not None}


def _filters(shape: _Shape, ts_query: Any) -> list[ColumnElement[bool]]:
    table = Recipe.__table__.c  # type: ignore[attr-defined]
    filters: list[ColumnElement[bool]] = []
    if shape.seller:
        filters.append(table.seller_username == bindparam("seller"))
    if shape.min_rating:
        filters.append(table.avg_rating >= bindparam("min_rating"))
    if shape.created_after:
        filters.append(table.created_at >= bindparam("created_after"))
    if shape.created_before:
        filters.append(table.created_at <= bindparam("created_before"))
    if shape.search:
        filters.append(table.search_vector.op("@@")(ts_query))
    return filters


def _ordering(ordering: str, ts_query: Any) -> list[Any]:
    table = Recipe.__table__.c  # type: ignore[attr-defined]
    if ordering == "rank":
        return [func.ts_rank(table.search_vector, ts_query).desc(), table.id.desc()]
    if ordering == "popular":
        site_mean = select(
            cast(func.sum(table.rating_sum), Float) / func.nullif(func.sum(table.rating_count), 0)
        ).scalar_subquery()
        m = bindparam("popular_min_votes", type_=Integer)
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


#: The sum of the version shards (``models``), as a scalar subquery.
_VERSION = select(func.coalesce(func.sum(RecipeListVersion.version), 0)).scalar_subquery()
_READ_VERSION = select(_VERSION)
#: The number of recipes: the sum of the count shards (``models``), as a scalar subquery.
_COUNT = select(
    cast(func.coalesce(func.sum(RecipeCountShard.recipes), 0), BigInteger)
).scalar_subquery()


async def list_version(connection: AsyncConnection) -> int:
    """The list's version: different after any committed change to any recipe."""
    return int(await connection.scalar(_READ_VERSION) or 0)


@functools.cache
def _statements(shape: _Shape) -> tuple[Select[Any], Select[Any]]:
    """The page (with the count and the version) and the count alone, for ``shape``."""
    ts_query = func.websearch_to_tsquery(_REGCONFIG, bindparam("q", type_=Text))
    filters = _filters(shape, ts_query)
    total = (
        select(func.count()).select_from(Recipe).where(*filters).scalar_subquery()
        if filters
        else _COUNT
    )
    page = (
        select(total.label("total"), _VERSION.label("version"), *_LISTED)
        .where(*filters)
        .order_by(*_ordering(shape.ordering, ts_query))
        .offset(bindparam("offset", type_=Integer))
        .limit(bindparam("limit", type_=Integer))
    )
    return page, select(total, _VERSION)


@dataclass(frozen=True)
class RecipeList:
    total: int
    #: ``list_version`` in the snapshot the rows were read in.
    version: int
    #: The page the rows are (``?page=last`` resolved to its number).
    page: PageRequest
    #: The listed columns (``RecipeOut`` without the failure reason) by name.
    rows: Sequence[RowMapping]


async def list_recipes(
    *,
    connection: AsyncConnection,
    query: RecipeListQuery,
    page: PageRequest,
    popular_min_votes: int,
) -> RecipeList:
    """The total matching ``query``, the recipes of ``page`` and the version they were read at.

    404 past the last page. ``?page=last`` counts first (a second statement) to know its number.
    """
    shape, values = _shape(query)
    page_statement, count_statement = _statements(shape)
    if shape.ordering == "popular":
        values["popular_min_votes"] = popular_min_votes
    if page.last:
        page = page.resolved((await connection.execute(count_statement, values)).one()[0])
    values |= {"offset": page.offset, "limit": page.size}
    rows = (await connection.execute(page_statement, values)).mappings().all()
    if rows:
        return RecipeList(total=rows[0]["total"], version=rows[0]["version"], page=page, rows=rows)
    counted = (await connection.execute(count_statement, values)).one()
    page.check(counted[0])
    return RecipeList(total=counted[0], version=counted[1], page=page, rows=[])
