"""The locking argument of ``rate_recipe``, with the interleavings forced one step at a time.

The second rating's statement starts (and takes its snapshot) while the first is uncommitted,
and has to wait; the first then commits. These are the orders in which a separate read of the
previous score would have counted a rating twice or lost one.
"""

import asyncio
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import RatingAdded
from recipes import ratings
from recipes.ratings import RatingOutcome
from servicekit import NOTIFY_CHANNEL, Principal, SessionMaker, libpq_url
from tests.support import Users, create_recipe, outbox_events

pytestmark = pytest.mark.integration


def _customer(user_id: int) -> Principal:
    return Principal(user_id=user_id, username=f"c{user_id}", role="customer", token_id="")


async def _rate(session: AsyncSession, recipe_id: int, user_id: int, score: int) -> RatingOutcome:
    return await ratings.rate_recipe(
        session=session,
        recipe_id=recipe_id,
        customer=_customer(user_id),
        score=score,
        comment="",
    )


async def _rate_and_commit(
    session_maker: SessionMaker, recipe_id: int, user_id: int, score: int
) -> RatingOutcome:
    async with session_maker() as session, session.begin():
        return await _rate(session, recipe_id, user_id, score)


async def _waiting_on_a_lock(session_maker: SessionMaker) -> bool:
    async with session_maker() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


async def _second_waits_for_first(
    session_maker: SessionMaker, recipe_id: int, first: tuple[int, int], second: tuple[int, int]
) -> RatingOutcome:
    """Rate ``first`` without committing, start ``second``, see it wait, commit ``first``."""
    async with session_maker() as session, session.begin():
        await _rate(session, recipe_id, *first)
        outcome = asyncio.ensure_future(_rate_and_commit(session_maker, recipe_id, *second))
        for _ in range(200):
            if await _waiting_on_a_lock(session_maker):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the second rating never waited for the first")
        assert not outcome.done()
    return await outcome


async def _aggregates(session_maker: SessionMaker, recipe_id: int) -> tuple[int, int, float]:
    async with session_maker() as session:
        row = (
            await session.execute(
                text("SELECT rating_count, rating_sum, avg_rating FROM recipes WHERE id = :r"),
                {"r": recipe_id},
            )
        ).one()
    return row.rating_count, row.rating_sum, row.avg_rating


async def test_a_first_rating_sent_twice_at_once_counts_once(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    recipe = await create_recipe(client, users.seller())
    second = await _second_waits_for_first(session_maker, recipe["id"], (500, 2), (500, 5))
    assert second.previous_score == 2
    assert await _aggregates(session_maker, recipe["id"]) == (1, 5, 5.0)


async def test_two_customers_rating_one_recipe_at_once_both_count(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    recipe = await create_recipe(client, users.seller())
    await _rate_and_commit(session_maker, recipe["id"], 600, 1)
    second = await _second_waits_for_first(session_maker, recipe["id"], (601, 4), (602, 3))
    assert second.previous_score is None and second.rating_count == 3
    assert await _aggregates(session_maker, recipe["id"]) == (3, 8, 8 / 3)


async def test_rating_a_missing_recipe_is_not_found(
    client: httpx.AsyncClient, users: Users
) -> None:
    response = await client.post(
        "/api/recipes/987654/rate/", json={"score": 3}, headers=users.customer()
    )
    assert response.status_code == 404


async def test_a_rating_its_aggregates_and_its_event_are_one_statement(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker, database_url: str
) -> None:
    recipe = await create_recipe(client, users.seller())
    await _rate_and_commit(session_maker, recipe["id"], 700, 2)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as listener:
        await listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        async with session_maker() as session:
            sync_engine = session.get_bind()
            event.listen(sync_engine, "before_cursor_execute", record)
            try:
                async with session.begin():
                    outcome = await _rate(session, recipe["id"], 701, 5)
                    # The writer's hold (servicekit._revocation: a per-user lock, the revoked
                    # check) touches no recipe; the one statement that rates locks the recipe
                    # row from there to the commit: one round trip.
                    touching_recipes = [s for s in statements if "recipes" in s]
                    assert len(touching_recipes) == 1
                    assert statements[-1] == touching_recipes[0]
                    assert "pg_notify" in statements[-1]
            finally:
                event.remove(sync_engine, "before_cursor_execute", record)
        notified = [n.channel async for n in listener.notifies(timeout=5, stop_after=1)]
    assert notified == [NOTIFY_CHANNEL]

    announced = RatingAdded.model_validate((await outbox_events(session_maker, "rating.added"))[-1])
    assert announced == RatingAdded(
        rating_id=outcome.rating_id,
        recipe_id=recipe["id"],
        recipe_title="Soup",
        seller_id=1,
        user_id=701,
        username="c701",
        score=5,
        previous_score=None,
        avg_rating=3.5,
        rating_count=2,
        rated_at=outcome.updated_at,
    )
    assert (outcome.avg_rating, outcome.rating_count) == (3.5, 2)
