"""Races on one user row, made deterministic: a second transaction holds the row (or the
unique address) while the API request runs, and is committed once the request waits for it."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from auth.models import User
from servicekit import OutboxMessage, SessionMaker
from tests.helpers import bearer, register, sign_in

pytestmark = pytest.mark.integration


@asynccontextmanager
async def held_change(app: FastAPI, statement: str, **params: Any) -> AsyncIterator[AsyncSession]:
    """A change of another transaction, uncommitted until the block ends (then committed)."""
    maker: SessionMaker = app.state.session_maker
    async with maker() as session:
        await session.execute(text(statement), params)
        yield session
        await session.commit()


async def wait_until_blocked(app: FastAPI, request: "asyncio.Task[httpx.Response]") -> None:
    """Until some backend of this database waits for a lock (the request met the held change)."""
    maker: SessionMaker = app.state.session_maker
    async with maker() as session:
        for _ in range(1000):
            waiting = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            )
            await session.rollback()
            if waiting or request.done():
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the request never waited for the held change")


async def _user_events(app: FastAPI, user_id: int) -> list[dict[str, Any]]:
    maker: SessionMaker = app.state.session_maker
    async with maker() as session:
        rows = (
            await session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at))  # type: ignore[arg-type]
        ).all()
    return [
        row.envelope["payload"] for row in rows if row.envelope["payload"]["user_id"] == user_id
    ]


async def test_a_change_waits_for_the_one_in_progress_and_gets_its_own_version(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Issue 16 row 4: both changes used to write the same version, copies kept the first."""
    user = await register(client, "alice")
    headers = bearer((await sign_in(client))["access"])
    async with held_change(
        app,
        "UPDATE users SET email = 'held@example.com', version = version + 1 WHERE id = :id",
        id=user["id"],
    ):
        request = asyncio.create_task(
            client.patch("/api/auth/me/", json={"email": "last@example.com"}, headers=headers)
        )
        await wait_until_blocked(app, request)
    assert (await request).status_code == 200
    maker: SessionMaker = app.state.session_maker
    async with maker() as session:
        stored = await session.get(User, user["id"])
    assert stored is not None
    assert (stored.email, stored.version) == ("last@example.com", 3)
    assert [e["version"] for e in await _user_events(app, user["id"])][-1] == 3


async def test_delete_waits_for_a_change_in_progress(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client, "alice")
    headers = bearer((await sign_in(client))["access"])
    async with held_change(
        app, "UPDATE users SET version = version + 1 WHERE id = :id", id=user["id"]
    ):
        request = asyncio.create_task(client.delete("/api/auth/me/", headers=headers))
        await wait_until_blocked(app, request)
    assert (await request).status_code == 204
    deleted = (await _user_events(app, user["id"]))[-1]
    assert deleted["version"] == 3  # after the held change's 2, not beside it


async def test_two_users_taking_one_address_at_once_get_a_field_error(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Issue 16 row 5: the loser of the race used to get a 500 (IntegrityError)."""
    alice = await register(client, "alice")
    await register(client, "bob")
    bob = bearer((await sign_in(client, "bob"))["access"])
    async with held_change(
        app, "UPDATE users SET email = 'shared@example.com' WHERE id = :id", id=alice["id"]
    ):
        request = asyncio.create_task(
            client.patch("/api/auth/me/", json={"email": "Shared@example.com"}, headers=bob)
        )
        await wait_until_blocked(app, request)
    answer = await request
    assert answer.status_code == 400
    assert answer.json() == {"email": ["A user with that email already exists."]}


async def test_two_sign_ups_with_one_address_at_once_get_the_email_error(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    alice = await register(client, "alice")
    async with held_change(
        app, "UPDATE users SET email = 'shared@example.com' WHERE id = :id", id=alice["id"]
    ):
        request = asyncio.create_task(
            client.post(
                "/api/auth/register/",
                json={
                    "username": "bob",
                    "email": "shared@example.com",
                    "password": "correct-Horse-battery-9",
                },
            )
        )
        await wait_until_blocked(app, request)
    answer = await request
    assert answer.status_code == 400
    assert answer.json() == {"email": ["A user with that email already exists."]}
