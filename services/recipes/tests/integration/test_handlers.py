from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, select

import recipes.main
import servicekit.testing
from contracts import (
    ORIGINAL_IMAGE_VARIANT,
    Event,
    ImageVariant,
    RecipeImageFailed,
    RecipeImageReady,
    UserDeleted,
    UserUpdated,
)
from recipes import service
from recipes.models import RecipeImage
from recipes.settings import Settings
from servicekit import SessionMaker
from tests.support import JPEG, PNG, Users, create_recipe, outbox_events

pytestmark = pytest.mark.integration

NOW = datetime(2025, 1, 1, tzinfo=UTC)


async def deliver(session_maker: SessionMaker, event: Event) -> None:
    """Run ``event`` through the recipes consumer's handlers and inbox, as for one message."""
    # The recipes handlers need no settings: the defaults do.
    consumer = recipes.main.service.consumer(Settings.model_construct(), session_maker)
    assert await servicekit.testing.deliver(consumer, event)


def ready(recipe_id: int, version: int) -> RecipeImageReady:
    variant = ImageVariant(
        name="card",
        url=f"http://media/{recipe_id}/v{version}/card.webp",
        width=400,
        height=300,
        format="webp",
        bytes=1234,
    )
    full_size = ImageVariant(
        name=ORIGINAL_IMAGE_VARIANT,
        url=f"http://media/{recipe_id}/v{version}/original.jpg",
        width=1200,
        height=900,
        format="jpeg",
        bytes=54321,
    )
    return RecipeImageReady(
        recipe_id=recipe_id,
        image_version=version,
        resized_image_url=f"http://media/{recipe_id}/v{version}/800.jpg",
        variants=(variant, full_size),
    )


async def upload(client: httpx.AsyncClient, users: Users) -> int:
    response = await client.post(
        "/api/recipes/",
        data={"title": "Pie"},
        files={"image": ("a.png", PNG, "image/png")},
        headers=users.seller(),
    )
    recipe_id: int = response.json()["id"]
    return recipe_id


async def originals(session_maker: SessionMaker) -> int:
    async with session_maker() as session:
        return int(await session.scalar(select(func.count()).select_from(RecipeImage)) or 0)


async def test_image_ready_stores_urls_and_drops_the_original(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    recipe_id = await upload(client, users)
    pending = (await client.get(f"/api/recipes/{recipe_id}/")).json()
    assert pending["original_image"] is None
    await deliver(session_maker, ready(recipe_id, 1))
    await deliver(session_maker, ready(recipe_id, 1))  # a second copy changes nothing
    body = (await client.get(f"/api/recipes/{recipe_id}/")).json()
    assert body["image_status"] == "ready"
    assert body["resized_image_url"] == f"http://media/{recipe_id}/v1/800.jpg"
    # The media service's stripped copy, never the upload (whose internal URL is signed).
    assert body["original_image"] == f"http://media/{recipe_id}/v1/original.jpg"
    assert body["image_variants"][0]["name"] == "card"
    assert await originals(session_maker) == 0
    listed = (await client.get("/api/recipes/")).json()["results"][0]
    assert listed["image_variants"] == body["image_variants"]
    assert listed["original_image"] == body["original_image"]


async def test_an_older_image_never_overwrites_a_newer_one(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    recipe_id = await upload(client, users)
    await client.patch(
        f"/api/recipes/{recipe_id}/",
        files={"image": ("b.jpg", JPEG, "image/jpeg")},
        headers=users.seller(),
    )
    await deliver(session_maker, ready(recipe_id, 2))
    await deliver(session_maker, ready(recipe_id, 1))
    await deliver(
        session_maker, RecipeImageFailed(recipe_id=recipe_id, image_version=1, reason="late")
    )
    await deliver(session_maker, ready(recipe_id, 2))
    body = (await client.get(f"/api/recipes/{recipe_id}/")).json()
    assert (body["image_status"], body["image_version"]) == ("ready", 2)
    assert body["resized_image_url"].endswith("/v2/800.jpg")


async def test_a_failed_image_is_explained_to_its_owner_only(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    recipe_id = await upload(client, users)
    reason = "The file is not a readable image."
    await deliver(
        session_maker, RecipeImageFailed(recipe_id=recipe_id, image_version=1, reason=reason)
    )
    url = f"/api/recipes/{recipe_id}/"
    owner = (await client.get(url, headers=users.seller())).json()
    assert owner["image_status"] == "failed" and owner["image_failure_reason"] == reason
    public = (await client.get(url)).json()
    assert public["image_status"] == "failed" and public["image_failure_reason"] is None
    rival = (await client.get(url, headers=users.seller(2, "rival"))).json()
    assert rival["image_failure_reason"] is None
    # A new upload after the failure is processed normally.
    await client.patch(url, files={"image": ("b.jpg", JPEG, "image/jpeg")}, headers=users.seller())
    await deliver(session_maker, ready(recipe_id, 2))
    assert (await client.get(url)).json()["image_status"] == "ready"


async def test_user_updated_renames_seller_and_rater_unless_older(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    recipe = await create_recipe(client, users.seller(7, "old-chef"))
    await client.post(
        f"/api/recipes/{recipe['id']}/rate/",
        json={"score": 5},
        headers=users.customer(8, "old-eater"),
    )

    def renamed(user_id: int, username: str, version: int) -> UserUpdated:
        return UserUpdated(
            user_id=user_id,
            username=username,
            email=f"{username}@x.org",
            role="seller",
            date_joined=NOW,
            updated_at=NOW,
            version=version,
        )

    await deliver(session_maker, renamed(7, "new-chef", 3))
    await deliver(session_maker, renamed(8, "new-eater", 2))
    await deliver(session_maker, renamed(7, "stale-chef", 2))
    assert (await client.get(f"/api/recipes/{recipe['id']}/")).json()["seller_username"] == (
        "new-chef"
    )
    ratings = (await client.get(f"/api/recipes/{recipe['id']}/ratings/")).json()
    assert ratings["results"][0]["user"] == "new-eater"
    assert (await client.get("/api/recipes/?seller=new-chef")).json()["count"] == 1


async def test_user_deleted_removes_recipes_and_ratings_with_exact_aggregates(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    gone_seller = [await create_recipe(client, users.seller(5, "leaver")) for _ in range(2)]
    kept = [await create_recipe(client, users.seller(6, "stayer")) for _ in range(2)]
    for recipe in kept + gone_seller:
        for user_id, score in ((50, 5), (51, 2)):
            await client.post(
                f"/api/recipes/{recipe['id']}/rate/",
                json={"score": score},
                headers=users.customer(user_id, f"c{user_id}"),
            )

    deleted_at = datetime.now(UTC)
    await deliver(
        session_maker, UserDeleted(user_id=5, username="leaver", version=2, deleted_at=deleted_at)
    )
    await deliver(
        session_maker, UserDeleted(user_id=50, username="c50", version=2, deleted_at=deleted_at)
    )

    listed = (await client.get("/api/recipes/")).json()
    assert sorted(r["id"] for r in listed["results"]) == sorted(r["id"] for r in kept)
    assert all((r["avg_rating"], r["rating_count"]) == (2.0, 1) for r in listed["results"])
    deleted = await outbox_events(session_maker, "recipe.deleted")
    assert sorted(e["recipe_id"] for e in deleted) == sorted(r["id"] for r in gone_seller)
    removed = await outbox_events(session_maker, "rating.removed")
    assert {(e["recipe_id"], e["score"], e["rating_count"]) for e in removed} >= {
        (r["id"], 5, 1) for r in kept
    }
    assert all(e["user_id"] == 50 for e in removed)

    await deliver(
        session_maker, UserDeleted(user_id=51, username="c51", version=2, deleted_at=deleted_at)
    )
    listed = (await client.get("/api/recipes/")).json()
    assert all((r["avg_rating"], r["rating_count"]) == (0.0, 0) for r in listed["results"])


async def test_image_events_for_a_deleted_recipe_are_ignored(session_maker: SessionMaker) -> None:
    async with session_maker() as session, session.begin():
        assert not await service.apply_image_ready(session=session, event=ready(123456, 1))
        failed = RecipeImageFailed(recipe_id=123456, image_version=1, reason="x")
        assert not await service.apply_image_failed(session=session, event=failed)
