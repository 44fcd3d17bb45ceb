import dataclasses
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlmodel import col

from auth.models import RefreshToken, User
from auth.passwords import Passwords
from auth.signin import prune_expired
from servicekit import SessionMaker
from tests.helpers import STRONG_PASSWORD, bearer, register, sign_in

pytestmark = pytest.mark.integration

NO_ACCOUNT = {"detail": "No active account found with the given credentials"}


async def test_sign_in_returns_access_and_refresh_tokens(client: httpx.AsyncClient) -> None:
    user = await register(client, "alice", role="seller")
    tokens = await sign_in(client)
    assert set(tokens) == {"access", "refresh"}
    access = jwt.decode(tokens["access"], options={"verify_signature": False})
    refresh = jwt.decode(tokens["refresh"], options={"verify_signature": False})
    assert access["sub"] == str(user["id"])
    assert access["username"] == "alice"
    assert access["role"] == "seller"
    assert access["typ"] == "access"
    assert refresh["typ"] == "refresh"
    # SimpleJWT's claims, for clients of the original API.
    assert access["user_id"] == user["id"]
    assert (access["token_type"], refresh["token_type"]) == ("access", "refresh")
    assert access["exp"] - access["iat"] == 15 * 60
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600
    assert access["jti"] != refresh["jti"]
    assert jwt.get_unverified_header(tokens["access"])["alg"] == "EdDSA"


async def test_token_and_refresh_accept_form_bodies(client: httpx.AsyncClient) -> None:
    """DRF's default parsers take forms as well as JSON."""
    await register(client, "alice")
    pair = await client.post(
        "/api/auth/token/", data={"username": "alice", "password": STRONG_PASSWORD}
    )
    assert pair.status_code == 200, pair.text
    multipart = await client.post(
        "/api/auth/token/refresh/", data={"refresh": pair.json()["refresh"]}, files={"f": b""}
    )
    assert multipart.status_code == 200, multipart.text
    assert set(multipart.json()) == {"access", "refresh"}
    wrong = await client.post("/api/auth/token/", data={"username": "alice", "password": "no"})
    assert wrong.status_code == 401


@pytest.mark.parametrize(("username", "password"), [("alice", "wrong-password"), ("nobody", "x")])
async def test_wrong_credentials_are_a_401(
    client: httpx.AsyncClient, username: str, password: str
) -> None:
    await register(client, "alice")
    response = await client.post(
        "/api/auth/token", json={"username": username, "password": password}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == NO_ACCOUNT["detail"]


async def test_missing_credentials_are_field_errors(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/token/", json={"username": "alice"})
    assert response.status_code == 400
    assert response.json() == {"password": ["This field is required."]}


async def test_refresh_rotates_and_stores_only_a_digest(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await register(client)
    first = await sign_in(client)
    response = await client.post("/api/auth/token/refresh/", json={"refresh": first["refresh"]})
    assert response.status_code == 200
    second = response.json()
    assert set(second) == {"access", "refresh"}
    assert second["refresh"] != first["refresh"]
    me = await client.get("/api/auth/me/", headers=bearer(second["access"]))
    assert me.status_code == 200

    maker: SessionMaker = app.state.session_maker
    async with maker() as session:
        rows = (await session.scalars(select(RefreshToken))).all()
    assert len(rows) == 2
    assert len({row.family_id for row in rows}) == 1
    stored = {row.token_hash for row in rows}
    assert first["refresh"] not in stored and second["refresh"] not in stored


async def test_a_reused_refresh_token_revokes_its_family(client: httpx.AsyncClient) -> None:
    await register(client)
    first = await sign_in(client)
    other_session = await sign_in(client)
    rotated = (
        await client.post("/api/auth/token/refresh/", json={"refresh": first["refresh"]})
    ).json()

    reuse = await client.post("/api/auth/token/refresh/", json={"refresh": first["refresh"]})
    assert reuse.status_code == 401
    assert reuse.json()["detail"] == "Token is invalid or expired"
    after = await client.post("/api/auth/token/refresh/", json={"refresh": rotated["refresh"]})
    assert after.status_code == 401
    # Another sign-in is another family: untouched.
    unrelated = await client.post(
        "/api/auth/token/refresh", json={"refresh": other_session["refresh"]}
    )
    assert unrelated.status_code == 200


async def test_logout_revokes_the_family(client: httpx.AsyncClient) -> None:
    await register(client)
    tokens = await sign_in(client)
    rotated = (
        await client.post("/api/auth/token/refresh/", json={"refresh": tokens["refresh"]})
    ).json()
    response = await client.post("/api/auth/logout/", json={"refresh": rotated["refresh"]})
    assert response.status_code == 204
    again = await client.post("/api/auth/token/refresh/", json={"refresh": rotated["refresh"]})
    assert again.status_code == 401


@pytest.mark.parametrize("kind", ["access", "garbage"])
async def test_refresh_needs_a_refresh_token(client: httpx.AsyncClient, kind: str) -> None:
    await register(client)
    tokens = await sign_in(client)
    token = tokens["access"] if kind == "access" else "not.a.token"
    response = await client.post("/api/auth/token/refresh/", json={"refresh": token})
    assert response.status_code == 401
    assert response.json()["detail"] == "Token is invalid or expired"


async def test_sign_in_rehashes_a_password_hashed_with_old_parameters(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await register(client)
    old = await Passwords(memory_cost=512, time_cost=1, parallelism=1).hash(STRONG_PASSWORD)
    maker: SessionMaker = app.state.session_maker
    async with maker() as session:
        user = (await session.scalars(select(User))).one()
        user.password_hash = old
        await session.commit()
    await sign_in(client)
    async with maker() as session:
        rehashed = (await session.scalars(select(col(User.password_hash)))).one()
    assert rehashed != old
    assert "m=1024" in rehashed  # the app's current parameters
    await sign_in(client)  # and the new hash still verifies


class CountingPasswords(Passwords):
    def __init__(self) -> None:
        super().__init__(memory_cost=1024, time_cost=1, parallelism=1)
        self.verifications = 0

    async def verify(self, password_hash: str, password: str) -> bool:
        self.verifications += 1
        return await super().verify(password_hash, password)


@pytest.mark.parametrize("username", ["alice", "nobody"])
async def test_an_unknown_user_costs_one_hash_verification_too(
    client: httpx.AsyncClient, app: FastAPI, username: str
) -> None:
    """No user enumeration by timing: both paths run exactly one Argon2 verification."""
    await register(client, "alice")
    spy = CountingPasswords()
    app.state.auth = dataclasses.replace(app.state.auth, passwords=spy)
    response = await client.post(
        "/api/auth/token/", json={"username": username, "password": "wrong-password"}
    )
    assert response.status_code == 401
    assert spy.verifications == 1


async def test_pruning_deletes_only_long_expired_rows(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await register(client)
    await sign_in(client)
    await sign_in(client)
    maker: SessionMaker = app.state.session_maker
    async with maker() as session:
        first = (await session.scalars(select(RefreshToken))).first()
        assert first is not None
        first.expires_at = datetime.now(UTC) - timedelta(days=2)
        await session.commit()
    async with maker() as session, session.begin():
        assert await prune_expired(session=session, now=datetime.now(UTC)) == 1
        assert len((await session.scalars(select(RefreshToken))).all()) == 1
