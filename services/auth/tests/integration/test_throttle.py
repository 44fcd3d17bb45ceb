import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from auth.models import LoginFailure
from auth.passwords import Passwords
from servicekit import SessionMaker
from tests.helpers import STRONG_PASSWORD, register

pytestmark = pytest.mark.integration

# conftest's settings, per 300 seconds: 3 failures per username from one address, 5 per
# address, 6 per username from all addresses together.


async def _attempt(
    client: httpx.AsyncClient, username: str, password: str = "wrong-password", **headers: str
) -> httpx.Response:
    return await client.post(
        "/api/auth/token/", json={"username": username, "password": password}, headers=headers
    )


async def test_failures_per_username_and_address_are_throttled(client: httpx.AsyncClient) -> None:
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


async def test_a_success_clears_the_count_of_its_address(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    for _ in range(2):
        await _attempt(client, "alice")
    assert (await _attempt(client, "alice", STRONG_PASSWORD)).status_code == 200
    for _ in range(2):
        assert (await _attempt(client, "alice")).status_code == 401
    assert (await _attempt(client, "alice", STRONG_PASSWORD)).status_code == 200


def _trust_forwarded_for(app: FastAPI) -> None:
    app.state.auth = dataclasses.replace(app.state.auth, trust_forwarded_for=True)


async def test_guessing_from_elsewhere_does_not_lock_the_owner_out(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Issue 16 row 1: wrong guesses on a public username, then the owner from a clean address."""
    await register(client, "alice")
    _trust_forwarded_for(app)
    for n in range(6):  # two guessers, 3 each: the username's backstop (6) is reached
        guesser = {"X-Forwarded-For": f"203.0.113.{n // 3}"}
        assert (await _attempt(client, "alice", **guesser)).status_code == 401
    owner = await _attempt(client, "alice", STRONG_PASSWORD, **{"X-Forwarded-For": "198.51.100.1"})
    assert owner.status_code == 200


async def test_past_the_username_backstop_an_address_that_failed_is_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await register(client, "alice")
    _trust_forwarded_for(app)
    for n in range(6):  # six guessers, one guess each: no single address reached its limits
        assert (
            await _attempt(client, "alice", **{"X-Forwarded-For": f"203.0.113.{n}"})
        ).status_code == 401
    # A guesser that already failed (on any account) gets no further check on this one...
    again = await _attempt(client, "alice", **{"X-Forwarded-For": "203.0.113.0"})
    assert again.status_code == 429
    assert 0 < int(again.headers["Retry-After"]) <= 300
    # ...while a fresh address still gets its password checked.
    fresh = await _attempt(client, "alice", **{"X-Forwarded-For": "203.0.113.99"})
    assert fresh.status_code == 401


class CountingPasswords(Passwords):
    """Real hashing, counting every password check (the throttle's job is to bound them)."""

    checks = 0

    async def verify(self, password_hash: str, password: str) -> bool:
        self.checks += 1
        return await super().verify(password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        self.checks += 1
        await super().verify_dummy(password)


async def test_concurrent_guesses_get_no_more_checks_than_the_limit(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Issue 16 row 2: 40 wrong guesses at once used to get 26 checks against a limit of 10."""
    await register(client, "alice")
    passwords = CountingPasswords(memory_cost=1024, time_cost=1, parallelism=1)
    app.state.auth = dataclasses.replace(app.state.auth, passwords=passwords)
    answers = await asyncio.gather(*(_attempt(client, "alice") for _ in range(40)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [401] * 3 + [429] * 37
    assert passwords.checks == 3


async def test_concurrent_guesses_from_many_addresses_stop_at_the_backstop(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await register(client, "alice")
    _trust_forwarded_for(app)
    passwords = CountingPasswords(memory_cost=1024, time_cost=1, parallelism=1)
    app.state.auth = dataclasses.replace(app.state.auth, passwords=passwords)
    # Ten addresses, four guesses each, all at once: the backstop's 6, then at most one check
    # for each address that had not failed yet.
    answers = await asyncio.gather(
        *(
            _attempt(client, "alice", **{"X-Forwarded-For": f"203.0.113.{n % 10}"})
            for n in range(40)
        )
    )
    assert passwords.checks == sum(answer.status_code == 401 for answer in answers)
    assert 6 <= passwords.checks <= 6 + 10
