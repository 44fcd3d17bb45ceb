"""The internal endpoint serving uploaded originals, with photo-sized uploads."""

import hashlib
import os
import time

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from recipes.images import MEDIA_CREDENTIAL_HEADER, image_reference
from recipes.settings import Settings
from servicekit import SessionMaker, libpq_url
from tests.support import Users, outbox_events

pytestmark = pytest.mark.integration

#: Larger than the 1 MB at which a form parser would spool a file part to disk.
PHOTO = b"\xff\xd8\xff\xe0" + os.urandom(3 * 1024 * 1024)


MEDIA_CREDENTIAL = "test-media-credential"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "max_upload_bytes": 4 * 1024 * 1024,
            "media_credential": SecretStr(MEDIA_CREDENTIAL),
        }
    )


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


async def test_an_expired_link_serves_the_media_worker_only(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker, settings: Settings
) -> None:
    """A dead letter replayed days later still gets its original (the worker's credential)."""
    created = await upload_photo(client, users.seller(), "POST", "/api/recipes/")
    [event] = await outbox_events(session_maker, "recipe.created")
    expired = image_reference(
        recipe_id=created.json()["id"],
        image_version=event["image"]["image_version"],
        sha256=event["image"]["sha256"],
        size=event["image"]["size"],
        content_type=event["image"]["content_type"],
        base_url="http://testserver",
        key=settings.signing_key,
        ttl_seconds=1,
        now=time.time() - 3 * 86_400,
    )
    anyone = await client.get(expired.url)
    wrong = await client.get(expired.url, headers={MEDIA_CREDENTIAL_HEADER: "guess"})
    media = await client.get(expired.url, headers={MEDIA_CREDENTIAL_HEADER: MEDIA_CREDENTIAL})
    assert (anyone.status_code, wrong.status_code, media.status_code) == (403, 403, 200)
    assert media.content == PHOTO
    # The credential does not replace the signature.
    forged = expired.url.rsplit("=", 1)[0] + "=" + "0" * 64
    refused = await client.get(forged, headers={MEDIA_CREDENTIAL_HEADER: MEDIA_CREDENTIAL})
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/internal/images/1/1?expires=\u00b2&signature=" + "0" * 64, 403),
        ("/internal/images/1/1?expires=1&signature=" + "\u00e9" * 64, 403),
        ("/internal/images/1/1?expires=%FF&signature=%FF", 403),
        ("/internal/images/1/abc?expires=1&signature=x", 404),
        ("/internal/images/1/99999999999999999999?expires=1&signature=x", 404),
        ("/internal/images/abc/1?expires=1&signature=x", 404),
    ],
)
async def test_malformed_internal_requests_are_refused_not_errors(
    client: httpx.AsyncClient, path: str, status: int
) -> None:
    response = await client.get(
        path, headers={MEDIA_CREDENTIAL_HEADER.encode(): "\u00e9".encode("latin-1")}
    )
    assert response.status_code == status, response.text


def test_originals_are_stored_without_compression(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        storage = conn.execute(
            "SELECT attstorage FROM pg_attribute"
            " WHERE attrelid = 'recipe_images'::regclass AND attname = 'data'"
        ).fetchone()
    assert storage == ("e",)  # EXTERNAL: out of line, never compressed
