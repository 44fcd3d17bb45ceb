"""What a client of the original API does: register, sign in, send its token."""

import uuid
from typing import Any

import httpx

PASSWORD = "Quince-Paste-2024"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def register(gateway: httpx.Client, role: str, *, email: bool = True) -> dict[str, Any]:
    """A new account, registered as the original's clients did (JSON)."""
    name = unique(role)
    body: dict[str, str] = {"username": name, "password": PASSWORD, "role": role}
    if email:
        body["email"] = f"{name}@example.com"
    response = gateway.post("/api/auth/register/", json=body)
    assert response.status_code == 201, response.text
    account: dict[str, Any] = response.json()
    return account


def access_token(gateway: httpx.Client, username: str) -> str:
    response = gateway.post("/api/auth/token/", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    token: str = response.json()["access"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
