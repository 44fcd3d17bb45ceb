"""Helpers shared by the tests: tokens per role, sample images, outbox inspection."""

import os
from typing import Any

import httpx
from sqlalchemy import text

from servicekit import SessionMaker
from servicekit.testing import TokenFactory

#: Small enough to build an oversized upload cheaply; the default (10 MB) has its own test.
TEST_MAX_UPLOAD = 64 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(2048)
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(4096)


class Users:
    """Access-token headers for the test's sellers and customers."""

    def __init__(self, tokens: TokenFactory) -> None:
        self._tokens = tokens

    def seller(self, user_id: int = 1, username: str = "chef") -> dict[str, str]:
        return self._tokens.headers(user_id=user_id, username=username, role="seller")

    def customer(self, user_id: int = 100, username: str = "eater") -> dict[str, str]:
        return self._tokens.headers(user_id=user_id, username=username, role="customer")


async def outbox_events(session_maker: SessionMaker, event_type: str) -> list[dict[str, Any]]:
    """Payloads of the pending outbox rows of one type, oldest first."""
    async with session_maker() as session:
        rows = await session.execute(
            text("SELECT envelope FROM outbox_messages WHERE routing_key = :t ORDER BY created_at"),
            {"t": event_type},
        )
        return [row.envelope["payload"] for row in rows]


async def create_recipe(
    client: httpx.AsyncClient, headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"title": "Soup", "description": "Warm", "ingredients": "water", **fields}
    response = await client.post("/api/recipes/", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
