from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select

from auth.replay import replay_users
from servicekit import OutboxMessage, SessionMaker
from tests.helpers import STRONG_PASSWORD, bearer, register, sign_in

pytestmark = pytest.mark.integration


async def _outbox(app: FastAPI) -> list[dict[str, Any]]:
    maker: SessionMaker = app.state.session_maker
    async with maker() as session:
        rows = (
            await session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at))  # type: ignore[arg-type]
        ).all()
    return [row.envelope for row in rows]


async def _clear_outbox(app: FastAPI) -> None:
    maker: SessionMaker = app.state.session_maker
    async with maker() as session:
        await session.execute(delete(OutboxMessage))
        await session.commit()


async def test_every_change_is_an_event_with_a_growing_version(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client, "alice", role="seller")
    tokens = await sign_in(client)
    headers = bearer(tokens["access"])
    await client.patch("/api/auth/me/", json={"email": "alice@new.example"}, headers=headers)
    await client.patch("/api/auth/me/", json={"email": "alice@new.example"}, headers=headers)
    await client.delete("/api/auth/me/", headers=headers)

    events = await _outbox(app)
    assert [(e["type"], e["payload"]["version"]) for e in events] == [
        ("user.registered", 1),
        ("user.updated", 2),  # the second PATCH changed nothing: no event
        ("user.deleted", 3),
    ]
    registered = events[0]["payload"]
    assert registered["user_id"] == user["id"]
    assert registered["username"] == "alice"
    assert registered["email"] == "alice@example.com"
    assert registered["role"] == "seller"
    assert {"date_joined", "updated_at"} <= set(registered)
    assert events[1]["payload"]["email"] == "alice@new.example"
    assert all(e["producer"] == "auth" for e in events)
    flat = str(events)
    assert "argon2" not in flat and STRONG_PASSWORD not in flat


async def test_a_rejected_registration_writes_no_event(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await client.post(
        "/api/auth/register/", json={"username": "x", "email": "x@example.com", "password": "1"}
    )
    assert response.status_code == 400
    assert await _outbox(app) == []


async def test_replay_republishes_every_user_with_the_same_version(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    for name in ("alice", "bob", "carol"):
        await register(client, name)
    tokens = await sign_in(client, "bob", STRONG_PASSWORD)
    await client.patch(
        "/api/auth/me/", json={"email": "bob@new.example"}, headers=bearer(tokens["access"])
    )
    await _clear_outbox(app)

    assert await replay_users(app.state.session_maker, batch_size=2) == 3
    events = await _outbox(app)
    assert sorted(
        (e["type"], e["payload"]["username"], e["payload"]["version"]) for e in events
    ) == [
        ("user.updated", "alice", 1),
        ("user.updated", "bob", 2),
        ("user.updated", "carol", 1),
    ]
