import httpx
import pytest

from tests.helpers import STRONG_PASSWORD, bearer, register, sign_in

pytestmark = pytest.mark.integration

NEW_PASSWORD = "another-Long-secret-42"


async def test_me_returns_the_caller(client: httpx.AsyncClient) -> None:
    user = await register(client, "alice", role="seller")
    tokens = await sign_in(client)
    for path in ("/api/auth/me/", "/api/auth/me"):
        response = await client.get(path, headers=bearer(tokens["access"]))
        assert response.status_code == 200
        assert response.json() == user


async def test_me_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/me/")
    assert response.status_code == 401
    assert response.json()["detail"] == "Authentication credentials were not provided."
    bad = await client.get("/api/auth/me/", headers=bearer("x.y.z"))
    assert bad.status_code == 401
    assert "detail" in bad.json()


async def test_patch_me_changes_the_email(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    await register(client, "bob")
    tokens = await sign_in(client)
    response = await client.patch(
        "/api/auth/me/", json={"email": "alice@new.example"}, headers=bearer(tokens["access"])
    )
    assert response.status_code == 200
    assert response.json()["email"] == "alice@new.example"
    taken = await client.patch(
        "/api/auth/me/", json={"email": "BOB@example.com"}, headers=bearer(tokens["access"])
    )
    assert taken.status_code == 400
    assert taken.json() == {"email": ["A user with that email already exists."]}


async def test_password_change_needs_the_current_password_and_signs_out(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "alice")
    tokens = await sign_in(client)
    headers = bearer(tokens["access"])
    wrong = await client.patch(
        "/api/auth/me/",
        json={"password": NEW_PASSWORD, "current_password": "nope"},
        headers=headers,
    )
    assert wrong.status_code == 400
    assert list(wrong.json()) == ["current_password"]
    weak = await client.patch(
        "/api/auth/me/",
        json={"password": "12345678", "current_password": STRONG_PASSWORD},
        headers=headers,
    )
    assert weak.status_code == 400
    assert "This password is entirely numeric." in weak.json()["password"]

    changed = await client.patch(
        "/api/auth/me/",
        json={"password": NEW_PASSWORD, "current_password": STRONG_PASSWORD},
        headers=headers,
    )
    assert changed.status_code == 200
    old_login = await client.post(
        "/api/auth/token/", json={"username": "alice", "password": STRONG_PASSWORD}
    )
    assert old_login.status_code == 401
    await sign_in(client, password=NEW_PASSWORD)
    stale = await client.post("/api/auth/token/refresh/", json={"refresh": tokens["refresh"]})
    assert stale.status_code == 401


async def test_delete_me_removes_the_account(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    tokens = await sign_in(client)
    response = await client.delete("/api/auth/me/", headers=bearer(tokens["access"]))
    assert response.status_code == 204
    gone = await client.get("/api/auth/me/", headers=bearer(tokens["access"]))
    assert gone.status_code == 401
    login = await client.post(
        "/api/auth/token/", json={"username": "alice", "password": STRONG_PASSWORD}
    )
    assert login.status_code == 401
    refresh = await client.post("/api/auth/token/refresh/", json={"refresh": tokens["refresh"]})
    assert refresh.status_code == 401
    await register(client, "alice")  # the name is free again
