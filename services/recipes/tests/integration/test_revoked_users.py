"""Tokens of deleted or deactivated users, and writes racing the deletion (issue 16 row 3).

The race is made deterministic: a transaction holding the user's exclusive lock stands for
``user.deleted`` being applied, and a write that started earlier holds its shared lock."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from contracts import UserDeleted, UserRole, UserUpdated
from recipes.models import Rating, Recipe
from servicekit import SessionMaker, hold_writer, record_user_state
from tests.integration.test_handlers import deliver
from tests.support import Users, create_recipe

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def deleted(user_id: int, username: str, version: int = 2) -> UserDeleted:
    return UserDeleted(user_id=user_id, username=username, version=version, deleted_at=NOW)


def updated(user_id: int, username: str, *, version: int, is_active: bool) -> UserUpdated:
    return UserUpdated(
        user_id=user_id,
        username=username,
        email=f"{username}@example.com",
        role=UserRole.SELLER,
        is_active=is_active,
        date_joined=NOW,
        updated_at=NOW,
        version=version,
    )


async def count(
    session_maker: SessionMaker, model: type[Any], user_column: str, user_id: int
) -> int:
    async with session_maker() as session:
        table = model.__tablename__
        return int(
            await session.scalar(
                text(f"SELECT count(*) FROM {table} WHERE {user_column} = :id"), {"id": user_id}
            )
            or 0
        )


async def test_a_deleted_sellers_token_is_refused_and_creates_nothing(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    """Issue 16 row 3: 3 s after deletion the same token created a recipe (201) that stayed."""
    seller = users.seller()
    await create_recipe(client, seller)
    await deliver(session_maker, deleted(1, "chef"))
    late = await client.post("/api/recipes/", json={"title": "Ghost"}, headers=seller)
    assert late.status_code == 401
    assert late.json()["code"] == "user_inactive"
    assert await count(session_maker, Recipe, "seller_id", 1) == 0


async def test_a_deleted_customers_token_no_longer_rates(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    recipe = await create_recipe(client, users.seller())
    await deliver(session_maker, deleted(100, "eater"))
    late = await client.post(
        f"/api/recipes/{recipe['id']}/rate/", json={"score": 5}, headers=users.customer()
    )
    assert late.status_code == 401
    assert await count(session_maker, Rating, "user_id", 100) == 0


async def test_deactivation_refuses_and_reactivation_restores(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    seller = users.seller()
    await create_recipe(client, seller)
    await deliver(session_maker, updated(1, "chef", version=2, is_active=False))
    assert (
        await client.post("/api/recipes/", json={"title": "x"}, headers=seller)
    ).status_code == 401
    assert await count(session_maker, Recipe, "seller_id", 1) == 1  # deactivated, not deleted
    await deliver(session_maker, updated(1, "chef", version=1, is_active=True))  # older: ignored
    assert (
        await client.post("/api/recipes/", json={"title": "x"}, headers=seller)
    ).status_code == 401
    await deliver(session_maker, updated(1, "chef", version=3, is_active=True))
    assert (
        await client.post("/api/recipes/", json={"title": "x"}, headers=seller)
    ).status_code == 201


async def settled(session_maker: SessionMaker, task: "asyncio.Task[Any]") -> None:
    """Until ``task`` is done or waits for a lock of this database (never a fixed sleep)."""
    async with session_maker() as session:
        for _ in range(3000):
            waiting = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            )
            await session.rollback()
            if waiting or task.done():
                return
            await asyncio.sleep(0.01)
    raise AssertionError("neither done nor waiting")


async def test_a_write_that_started_before_the_deletion_is_cleaned_up_with_the_rest(
    users: Users, session_maker: SessionMaker
) -> None:
    """A write past its token check when the deletion is applied: the cleanup waits for it."""
    async with session_maker() as writer:
        await hold_writer(writer, 1)  # the write has begun, with the user still live
        deletion = asyncio.create_task(deliver(session_maker, deleted(1, "chef")))
        await settled(session_maker, deletion)
        writer.add(Recipe(seller_id=1, seller_username="chef", title="Raced"))
        await writer.commit()
    await deletion
    assert await count(session_maker, Recipe, "seller_id", 1) == 0


async def test_a_write_that_starts_during_the_deletion_waits_and_is_refused(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    async with session_maker() as applying:
        await record_user_state(applying, user_id=1, version=2, revoked=True)  # holds the lock
        write = asyncio.create_task(
            client.post("/api/recipes/", json={"title": "Raced"}, headers=users.seller())
        )
        await settled(session_maker, write)
        await applying.commit()
    assert (await write).status_code == 401
    assert await count(session_maker, Recipe, "seller_id", 1) == 0


async def test_user_deleted_applied_twice_is_harmless(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    await create_recipe(client, users.seller())
    await deliver(session_maker, deleted(1, "chef"))
    await deliver(session_maker, deleted(1, "chef"))
    await deliver(session_maker, updated(1, "chef", version=1, is_active=True))  # late, older
    late = await client.post("/api/recipes/", json={"title": "x"}, headers=users.seller())
    assert late.status_code == 401
    assert await count(session_maker, Recipe, "seller_id", 1) == 0
