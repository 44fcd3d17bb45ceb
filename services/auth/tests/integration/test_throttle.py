import dataclasses
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from auth.models import LoginFailure
from servicekit.db import SessionMaker
from tests.helpers import STRONG_PASSWORD, register

pytestmark = pytest.mark.integration

# conftest's settings: 3 failures per username, 5 per address, in 300 seconds.


async def _attempt(
    client: httpx.AsyncClient, username: str, password: str = "wrong-password", **headers: str
) -> httpx.Response:
    return await client.post(
        "/api/auth/token/", json={"username": username, "password": password}, headers=headers
    )


async def test_failures_per_username_are_throttled(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    for _ in range(3):
        assert (await _attempt(client, "alice")).status_code == 401
    throttled = await _attempt(client, "ALICE", STRONG_PASSWORD)  # even with the right password
    assert throttled.status_code == 429
    retry_after = int(throttled.headers["Retry-After"])
    assert 0 < retry_after <= 300
    assert throttled.json()["detail"].startswith("Request was throttled.")


async def test_failures_per_address_are_throttled(client: httpx.AsyncClient) -> None:
    for n in range(5):
        assert (await _attempt(client, f"user{n}")).status_code == 401
    assert (await _attempt(client, "someone-else")).status_code == 429


async def test_forwarded_for_counts_only_when_trusted(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    for n in range(5):
        await _attempt(client, f"user{n}", **{"X-Forwarded-For": f"203.0.113.{n}"})
    # Untrusted: every attempt counted against the peer address, whatever the header says.
    assert (await _attempt(client, "u", **{"X-Forwarded-For": "198.51.100.7"})).status_code == 429

    app.state.auth = dataclasses.replace(app.state.auth, trust_forwarded_for=True)
    fresh = await _attempt(client, "u2", **{"X-Forwarded-For": "198.51.100.7, 10.0.0.1"})
    assert fresh.status_code == 401


async def test_failures_leave_the_window(client: httpx.AsyncClient, app: FastAPI) -> None:
    await register(client, "alice")
    for _ in range(3):
        await _attempt(client, "alice")
    assert (await _attempt(client, "alice", STRONG_PASSWORD)).status_code == 429
    maker: SessionMaker = app.state.session_maker
    async with maker() as session:
        await session.execute(
            update(LoginFailure).values(failed_at=datetime.now(UTC) - timedelta(seconds=301))
        )
        await session.commit()
    assert (await _attempt(client, "alice", STRONG_PASSWORD)).status_code == 200


async def test_a_success_clears_the_username_count(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    for _ in range(2):
        await _attempt(client, "alice")
    assert (await _attempt(client, "alice", STRONG_PASSWORD)).status_code == 200
    for _ in range(2):
        assert (await _attempt(client, "alice")).status_code == 401
    assert (await _attempt(client, "alice", STRONG_PASSWORD)).status_code == 200
