import hashlib
import time
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from recipes.images import image_reference
from recipes.models import Recipe, RecipeImage
from recipes.settings import Settings
from recipes.uploads import NOT_AN_IMAGE
from servicekit import SessionMaker
from tests.support import JPEG, PNG, TEST_MAX_UPLOAD, Users, create_recipe, outbox_events

pytestmark = pytest.mark.integration


async def upload(
    client: httpx.AsyncClient, headers: dict[str, str], image: bytes, field: str = "image"
) -> httpx.Response:
    """A multipart recipe with ``image`` sent as an opaque file (the type must be sniffed)."""
    return await client.post(
        "/api/recipes/",
        headers=headers,
        data={"title": "Bread", "description": "Crusty", "ingredients": "flour"},
        files={field: ("photo.bin", image, "application/octet-stream")},
    )


async def count(session_maker: SessionMaker, model: type[Recipe] | type[RecipeImage]) -> int:
    async with session_maker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_seller_creates_recipe_from_json_and_server_fields_are_ignored(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    response = await client.post(
        "/api/recipes/",
        json={
            "title": "Soup",
            "description": "Warm",
            "ingredients": "water",
            "instructions": "boil",
            "avg_rating": 5,
            "rating_count": 99,
            "resized_image_url": "http://evil.example/x.jpg",
            "seller_username": "someone-else",
            "created_at": "2000-01-01T00:00:00Z",
        },
        headers=users.seller(),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["avg_rating"] == 0 and body["rating_count"] == 0
    assert body["resized_image_url"] is None
    assert body["seller_username"] == "chef" and body["seller_id"] == 1
    assert body["image_status"] == "none" and body["image_variants"] == []
    assert not body["created_at"].startswith("2000")
    [event] = await outbox_events(session_maker, "recipe.created")
    assert event["recipe_id"] == body["id"] and event["image"] is None


async def test_multipart_upload_publishes_a_reference_that_fetches_the_exact_bytes(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker, settings: Settings
) -> None:
    response = await upload(client, users.seller(), PNG)
    assert response.status_code == 201, response.text
    recipe = response.json()
    assert recipe["image_status"] == "pending" and recipe["image_version"] == 1
    [event] = await outbox_events(session_maker, "recipe.created")
    image = event["image"]
    assert image["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert image["size"] == len(PNG) and image["content_type"] == "image/png"
    assert image["url"].startswith(
        settings.internal_base_url + f"/internal/images/{recipe['id']}/1?"
    )

    fetched = await client.get(image["url"])
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == image["sha256"]
    assert fetched.headers["content-type"] == "image/png"

    tampered = image["url"].replace("/1?", "/2?")
    assert (await client.get(tampered)).status_code == 403
    bad_signature = image["url"][:-4] + "0000"
    response = await client.get(bad_signature)
    assert response.status_code == 403 and response.json()["code"] == "invalid_signature"
    later = image["url"].replace("expires=", "expires=9")
    assert (await client.get(later)).status_code == 403


async def test_an_expired_reference_is_refused(
    client: httpx.AsyncClient, users: Users, settings: Settings
) -> None:
    response = await upload(client, users.seller(), JPEG)
    recipe_id = response.json()["id"]
    expired = image_reference(
        recipe_id=recipe_id,
        image_version=1,
        sha256=hashlib.sha256(JPEG).hexdigest(),
        size=len(JPEG),
        content_type="image/jpeg",
        base_url=settings.internal_base_url,
        key=settings.signing_key,
        ttl_seconds=settings.image_url_ttl_seconds,
        now=time.time() - settings.image_url_ttl_seconds - 5,
    )
    response = await client.get(expired.url)
    assert response.status_code == 403
    assert response.json()["detail"] == "Invalid or expired image link."


async def test_internal_url_is_not_under_the_public_api(settings: Settings) -> None:
    reference = image_reference(
        recipe_id=1,
        image_version=1,
        sha256="0" * 64,
        size=1,
        content_type="image/png",
        base_url=settings.internal_base_url,
        key=settings.signing_key,
        ttl_seconds=60,
    )
    assert urlsplit(reference.url).path.startswith("/internal/images/")


async def test_original_image_field_name_is_accepted(
    client: httpx.AsyncClient, users: Users
) -> None:
    response = await upload(client, users.seller(), JPEG, field="original_image")
    assert response.status_code == 201, response.text
    assert response.json()["image_status"] == "pending"
    # The original's field is there, null until the media service made the stripped copy.
    assert response.json()["original_image"] is None


async def test_oversized_image_is_413_and_nothing_is_stored(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    big = PNG + bytes(TEST_MAX_UPLOAD)
    response = await upload(client, users.seller(), big)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    huge_body = await client.post(
        "/api/recipes/",
        headers={**users.seller(), "content-type": "application/json"},
        content=b"{" + b" " * (TEST_MAX_UPLOAD + 2 * 1024 * 1024) + b"}",
    )
    assert huge_body.status_code == 413
    assert await count(session_maker, Recipe) == 0
    assert await count(session_maker, RecipeImage) == 0


async def test_streamed_body_of_unknown_length_is_capped(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    async def chunks() -> object:
        for _ in range(40):
            yield b"x" * 65536

    response = await client.post(
        "/api/recipes/",
        headers={**users.seller(), "content-type": "multipart/form-data; boundary=zz"},
        content=chunks(),  # type: ignore[arg-type]
    )
    assert response.status_code == 413
    assert await count(session_maker, Recipe) == 0


@pytest.mark.parametrize(
    "payload", [b"GIF00a not really", b"%PDF-1.7", b"<svg xmlns='x'/>", b"RIFF0000WAVE"]
)
@pytest.mark.parametrize("field", ["original_image", "image"])
async def test_non_image_content_is_a_field_error_whatever_it_claims(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker, payload: bytes, field: str
) -> None:
    """As the original's ImageField: 400 naming the part the file came in."""
    response = await client.post(
        "/api/recipes/",
        headers=users.seller(),
        data={"title": "x"},
        files={field: ("photo.jpg", payload, "image/jpeg")},
    )
    assert response.status_code == 400
    body = response.json()
    assert body[field] == [NOT_AN_IMAGE]
    assert body["code"] == "invalid"
    assert await count(session_maker, Recipe) == 0


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/plain", b"title=x"),
        ("application/json", b"{not json"),
        ("application/json", b"[1, 2]"),
        ("multipart/form-data", b"--nope"),
        ("multipart/form-data; boundary=b", b"\x00\xff garbage"),
        ("application/octet-stream", bytes(range(256))),
        ("application/json", b'{"title": "nul \\u0000 inside"}'),
        ("application/json", b'{"title": ["not", "text"]}'),
    ],
)
async def test_bodies_of_any_type_never_cause_a_500(
    client: httpx.AsyncClient, users: Users, content_type: str, content: bytes
) -> None:
    response = await client.post(
        "/api/recipes/",
        headers={**users.seller(), "content-type": content_type},
        content=content,
    )
    assert response.status_code in (400, 415), response.text
    assert "detail" in response.json()


async def test_validation_errors_keep_the_field_shape(
    client: httpx.AsyncClient, users: Users
) -> None:
    response = await client.post("/api/recipes/", json={"description": "x"}, headers=users.seller())
    assert response.status_code == 400
    assert response.json()["title"] == ["This field is required."]


async def test_only_sellers_create(client: httpx.AsyncClient, users: Users) -> None:
    anonymous = await client.post("/api/recipes/", json={"title": "x"})
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    customer = await client.post("/api/recipes/", json={"title": "x"}, headers=users.customer())
    assert customer.status_code == 403
    forged = await client.post(
        "/api/recipes/", json={"title": "x"}, headers={"Authorization": "Bearer nonsense"}
    )
    assert forged.status_code == 401


async def test_detail_is_public_and_unknown_is_404(client: httpx.AsyncClient, users: Users) -> None:
    recipe = await create_recipe(client, users.seller())
    response = await client.get(f"/api/recipes/{recipe['id']}/")
    assert response.status_code == 200
    assert response.json()["title"] == "Soup"
    missing = await client.get("/api/recipes/999999/")
    assert missing.status_code == 404 and missing.json() == {
        "detail": "Not found.",
        "code": "not_found",
    }


async def test_owner_updates_others_cannot(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    recipe = await create_recipe(client, users.seller())
    url = f"/api/recipes/{recipe['id']}/"
    patch = await client.patch(
        url,
        json={"title": "Better soup", "avg_rating": 5, "rating_count": 7, "resized_image_url": "x"},
        headers=users.seller(),
    )
    assert patch.status_code == 200, patch.text
    body = patch.json()
    assert body["title"] == "Better soup" and body["description"] == "Warm"
    assert (body["avg_rating"], body["rating_count"], body["resized_image_url"]) == (0, 0, None)

    put = await client.put(url, json={"title": "Plain soup"}, headers=users.seller())
    assert put.status_code == 200
    assert put.json()["description"] == ""

    other = await client.patch(url, json={"title": "mine"}, headers=users.seller(2, "rival"))
    assert other.status_code == 403
    customer = await client.put(url, json={"title": "mine"}, headers=users.customer())
    assert customer.status_code == 403
    anonymous = await client.patch(url, json={"title": "mine"})
    assert anonymous.status_code == 401
    unknown = await client.patch(
        "/api/recipes/424242/", json={"title": "x"}, headers=users.seller()
    )
    assert unknown.status_code == 404
    assert (await client.delete(url, headers=users.seller(2, "rival"))).status_code == 403

    updates = await outbox_events(session_maker, "recipe.updated")
    assert [e["title"] for e in updates] == ["Better soup", "Plain soup"]
    assert all(e["image"] is None for e in updates)


async def test_replacing_the_image_bumps_its_version(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    created = await upload(client, users.seller(), PNG)
    recipe_id = created.json()["id"]
    response = await client.patch(
        f"/api/recipes/{recipe_id}/",
        headers=users.seller(),
        files={"image": ("new.jpg", JPEG, "image/jpeg")},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image_version"] == 2 and body["image_status"] == "pending"
    assert body["title"] == "Bread"
    [event] = await outbox_events(session_maker, "recipe.updated")
    assert event["image"]["image_version"] == 2
    assert event["image"]["sha256"] == hashlib.sha256(JPEG).hexdigest()
    fetched = await client.get(event["image"]["url"])
    assert fetched.content == JPEG
    assert await count(session_maker, RecipeImage) == 1


async def test_owner_deletes(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    recipe = await create_recipe(client, users.seller())
    response = await client.delete(f"/api/recipes/{recipe['id']}/", headers=users.seller())
    assert response.status_code == 204
    assert (await client.get(f"/api/recipes/{recipe['id']}/")).status_code == 404
    [event] = await outbox_events(session_maker, "recipe.deleted")
    assert event["recipe_id"] == recipe["id"] and event["seller_id"] == 1


async def test_every_path_works_without_trailing_slash(
    client: httpx.AsyncClient, users: Users
) -> None:
    created = await client.post("/api/recipes", json={"title": "No slash"}, headers=users.seller())
    assert created.status_code == 201
    recipe_id = created.json()["id"]
    base = f"/api/recipes/{recipe_id}"
    assert (await client.get("/api/recipes")).json()["count"] == 1
    assert (await client.get(base)).status_code == 200
    put = await client.put(base, json={"title": "A"}, headers=users.seller())
    assert put.status_code == 200
    patch = await client.patch(base, json={"title": "B"}, headers=users.seller())
    assert patch.status_code == 200
    rate = await client.post(f"{base}/rate", json={"score": 4}, headers=users.customer())
    assert rate.status_code == 200
    assert (await client.get(f"{base}/ratings")).json()["count"] == 1
    assert (await client.delete(base, headers=users.seller())).status_code == 204


@pytest.mark.parametrize("recipe_id", [0, 2**31, 9562139835177])
async def test_an_id_no_recipe_can_have_is_not_found(
    client: httpx.AsyncClient, recipe_id: int
) -> None:
    for path in (f"/api/recipes/{recipe_id}/", f"/api/recipes/{recipe_id}/ratings/"):
        response = await client.get(path)
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
