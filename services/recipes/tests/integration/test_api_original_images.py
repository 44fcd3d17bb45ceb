"""The internal endpoint serving uploaded originals, with photo-sized uploads."""

import hashlib
import os

import httpx
import psycopg
import pytest

from recipes.settings import Settings
from servicekit.db import SessionMaker, libpq_url
from tests.support import Users, outbox_events

pytestmark = pytest.mark.integration

#: Larger than the 1 MB at which a form parser would spool a file part to disk.
PHOTO = b"\xff\xd8\xff\xe0" + os.urandom(3 * 1024 * 1024)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_upload_bytes": 4 * 1024 * 1024})


async def upload_photo(
    client: httpx.AsyncClient, headers: dict[str, str], method: str, path: str
) -> httpx.Response:
    return await client.request(
        method,
        path,
        headers=headers,
        data={"title": "Bread", "description": "Crusty"},
        files={"image": ("photo.jpg", PHOTO, "image/jpeg")},
    )


async def test_a_photo_sized_original_comes_back_byte_for_byte(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    created = await upload_photo(client, users.seller(), "POST", "/api/recipes/")
    assert created.status_code == 201, created.text
    [event] = await outbox_events(session_maker, "recipe.created")
    digest = hashlib.sha256(PHOTO).hexdigest()
    assert event["image"]["sha256"] == digest and event["image"]["size"] == len(PHOTO)

    fetched = await client.get(event["image"]["url"])
    assert fetched.status_code == 200
    assert fetched.content == PHOTO
    assert fetched.headers["content-type"] == "image/jpeg"
    assert fetched.headers["etag"] == f'"{digest}"'
    assert fetched.headers["content-length"] == str(len(PHOTO))


async def test_a_replaced_original_is_no_longer_served(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    created = await upload_photo(client, users.seller(), "POST", "/api/recipes/")
    recipe_id = created.json()["id"]
    [first] = await outbox_events(session_maker, "recipe.created")
    replaced = await upload_photo(client, users.seller(), "PATCH", f"/api/recipes/{recipe_id}/")
    assert replaced.status_code == 200, replaced.text

    gone = await client.get(first["image"]["url"])
    assert (gone.status_code, gone.json()["code"]) == (404, "not_found")
    [second] = await outbox_events(session_maker, "recipe.updated")
    assert (await client.get(second["image"]["url"])).content == PHOTO


def test_originals_are_stored_without_compression(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        storage = conn.execute(
            "SELECT attstorage FROM pg_attribute"
            " WHERE attrelid = 'recipe_images'::regclass AND attname = 'data'"
        ).fetchone()
    assert storage == ("e",)  # EXTERNAL: out of line, never compressed
