from typing import Any

import httpx

STRONG_PASSWORD = "correct-Horse-battery-9"


async def register(
    client: httpx.AsyncClient,
    username: str = "alice",
    *,
    email: str | None = None,
    role: str = "customer",
    password: str = STRONG_PASSWORD,
) -> dict[str, Any]:
    response = await client.post(
        "/api/auth/register/",
        json={
            "username": username,
            "email": email or f"{username}@example.com",
            "password": password,
            "role": role,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def sign_in(
    client: httpx.AsyncClient, username: str = "alice", password: str = STRONG_PASSWORD
) -> dict[str, str]:
    response = await client.post(
        "/api/auth/token/", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}
