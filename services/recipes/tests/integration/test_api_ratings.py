import asyncio

import httpx
import pytest
from sqlalchemy import text

from servicekit import SessionMaker
from tests.support import Users, create_recipe, outbox_events

pytestmark = pytest.mark.integration


async def test_customer_rates_and_rating_again_replaces_the_score(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    recipe = await create_recipe(client, users.seller())
    url = f"/api/recipes/{recipe['id']}/rate/"
    first = await client.post(url, json={"score": 4, "comment": "nice"}, headers=users.customer())
    assert first.status_code == 200, first.text
    body = first.json()
    assert {k: body[k] for k in ("user", "score", "comment", "avg_rating", "rating_count")} == {
        "user": "eater",
        "score": 4,
        "comment": "nice",
        "avg_rating": 4.0,
        "rating_count": 1,
    }
    assert {"id", "created_at"} <= body.keys()
    other = await client.post(url, json={"score": 1}, headers=users.customer(101, "critic"))
    assert other.json()["avg_rating"] == 2.5
    again = await client.post(url, json={"score": 2}, headers=users.customer())
    assert again.json()["id"] == body["id"]
    assert (again.json()["avg_rating"], again.json()["rating_count"]) == (1.5, 2)
    detail = (await client.get(f"/api/recipes/{recipe['id']}/")).json()
    assert (detail["avg_rating"], detail["rating_count"]) == (1.5, 2)

    events = await outbox_events(session_maker, "rating.added")
    assert [(e["score"], e["previous_score"], e["rating_count"]) for e in events] == [
        (4, None, 1),
        (1, None, 2),
        (2, 4, 2),
    ]
    assert events[0]["recipe_title"] == "Soup" and events[0]["seller_id"] == 1


async def test_who_may_rate(client: httpx.AsyncClient, users: Users) -> None:
    recipe = await create_recipe(client, users.seller())
    url = f"/api/recipes/{recipe['id']}/rate/"
    assert (await client.post(url, json={"score": 3})).status_code == 401
    assert (await client.post(url, json={"score": 3}, headers=users.seller())).status_code == 403
    unknown = await client.post(
        "/api/recipes/987654/rate/", json={"score": 3}, headers=users.customer()
    )
    assert unknown.status_code == 404
    for score in (0, 6, "five", None):
        bad = await client.post(url, json={"score": score}, headers=users.customer())
        assert bad.status_code == 400 and "score" in bad.json()


async def test_a_rating_may_come_as_a_form(client: httpx.AsyncClient, users: Users) -> None:
    """DRF's default parsers accept form bodies; so does the rate route."""
    recipe = await create_recipe(client, users.seller())
    url = f"/api/recipes/{recipe['id']}/rate/"
    encoded = await client.post(url, data={"score": "4"}, headers=users.customer())
    assert encoded.status_code == 200, encoded.text
    assert (encoded.json()["score"], encoded.json()["comment"]) == (4, "")
    multipart = await client.post(
        url, data={"score": "2", "comment": "dry"}, files={"f": b""}, headers=users.customer(101)
    )
    assert multipart.status_code == 200, multipart.text
    assert multipart.json()["rating_count"] == 2 and multipart.json()["avg_rating"] == 3
    bad = await client.post(url, data={"score": "six"}, headers=users.customer(102))
    assert bad.status_code == 400 and "score" in bad.json()


async def test_ratings_list_is_public_and_paginated(
    client: httpx.AsyncClient, users: Users
) -> None:
    recipe = await create_recipe(client, users.seller())
    for user_id in range(12):
        await client.post(
            f"/api/recipes/{recipe['id']}/rate/",
            json={"score": user_id % 5 + 1, "comment": f"c{user_id}"},
            headers=users.customer(200 + user_id, f"u{user_id}"),
        )
    page = (await client.get(f"/api/recipes/{recipe['id']}/ratings/")).json()
    assert page["count"] == 12 and len(page["results"]) == 10
    assert page["results"][0]["user"] == "u11"
    assert page["next"].endswith(f"/api/recipes/{recipe['id']}/ratings/?page=2")
    last = (await client.get(page["next"])).json()
    assert [r["comment"] for r in last["results"]] == ["c1", "c0"]
    missing = await client.get(f"/api/recipes/{recipe['id']}/ratings/?page=3")
    assert missing.status_code == 404 and missing.json()["detail"] == "Invalid page."
    last_page = (await client.get(f"/api/recipes/{recipe['id']}/ratings/?page=last")).json()
    assert last_page["results"] == last["results"] and last_page["next"] is None
    for huge in (str(10**20), "99999999999", str(2**31)):
        response = await client.get(f"/api/recipes/{recipe['id']}/ratings/?page={huge}")
        assert (response.status_code, response.json()["detail"]) == (404, "Invalid page.")
    garbage = {"Authorization": "Bearer garbage"}
    rejected = await client.get(f"/api/recipes/{recipe['id']}/ratings/", headers=garbage)
    assert rejected.status_code == 401
    assert (await client.get("/api/recipes/987654/ratings/")).status_code == 404


async def test_a_hundred_simultaneous_customers_give_exact_aggregates(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    recipe = await create_recipe(client, users.seller())
    url = f"/api/recipes/{recipe['id']}/rate/"
    requests = [(user_id, user_id % 5 + 1) for user_id in range(1000, 1100)]
    # Every third customer rates twice at the same moment, with another score.
    requests += [(user_id, (user_id + 2) % 5 + 1) for user_id in range(1000, 1100, 3)]

    async def rate(user_id: int, score: int) -> int:
        response = await client.post(
            url, json={"score": score}, headers=users.customer(user_id, f"c{user_id}")
        )
        return response.status_code

    statuses = await asyncio.gather(*(rate(u, s) for u, s in requests))
    assert set(statuses) == {200}

    async with session_maker() as session:
        truth = (
            await session.execute(
                text("SELECT count(*), sum(score) FROM ratings WHERE recipe_id = :r"),
                {"r": recipe["id"]},
            )
        ).one()
        stored = (
            await session.execute(
                text("SELECT rating_count, rating_sum, avg_rating FROM recipes WHERE id = :r"),
                {"r": recipe["id"]},
            )
        ).one()
    assert truth[0] == 100
    assert stored.rating_count == truth[0] and stored.rating_sum == truth[1]
    assert stored.avg_rating == truth[1] / truth[0]
    events = await outbox_events(session_maker, "rating.added")
    assert len(events) == len(requests)
    assert sum(e["previous_score"] is None for e in events) == 100
