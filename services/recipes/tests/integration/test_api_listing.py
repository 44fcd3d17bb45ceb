from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text

from contracts import UserUpdated
from recipes import service
from servicekit import SessionMaker
from tests.support import Users, create_recipe

pytestmark = pytest.mark.integration


async def seed(session_maker: SessionMaker, rows: list[dict[str, Any]]) -> None:
    """Insert recipes with chosen aggregates and dates (no API has such a backdoor)."""
    async with session_maker() as session, session.begin():
        for row in rows:
            values = {
                "seller_id": 1,
                "seller_username": "chef",
                "description": "",
                "ingredients": "",
                "rating_sum": 0,
                "rating_count": 0,
                "created_at": datetime.now(UTC),
                **row,
            }
            values["avg_rating"] = (
                values["rating_sum"] / values["rating_count"] if values["rating_count"] else 0.0
            )
            await session.execute(
                text(
                    "INSERT INTO recipes (seller_id, seller_username, title, description,"
                    " ingredients, rating_sum, rating_count, avg_rating, created_at, updated_at)"
                    " VALUES (:seller_id, :seller_username, :title, :description, :ingredients,"
                    " :rating_sum, :rating_count, :avg_rating, :created_at, :created_at)"
                ),
                values,
            )


def titles(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["title"] for r in response.json()["results"]]


async def test_pages_of_ten_newest_first_with_absolute_links(
    client: httpx.AsyncClient, session_maker: SessionMaker
) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    await seed(
        session_maker,
        [{"title": f"r{i:02}", "created_at": start + timedelta(hours=i)} for i in range(23)],
    )
    first = await client.get("/api/recipes/")
    body = first.json()
    assert body["count"] == 23 and body["previous"] is None
    assert titles(first) == [f"r{i:02}" for i in range(22, 12, -1)]
    assert body["next"] == "http://testserver/api/recipes/?page=2"
    item = body["results"][0]
    for field in (
        "id",
        "title",
        "description",
        "resized_image_url",
        "avg_rating",
        "rating_count",
        "seller_username",
        "created_at",
        "image_status",
        "image_variants",
    ):
        assert field in item

    third = await client.get(body["next"].replace("page=2", "page=3"))
    assert titles(third) == ["r02", "r01", "r00"]
    assert third.json()["next"] is None
    assert third.json()["previous"] == "http://testserver/api/recipes/?page=2"
    second = await client.get("/api/recipes/?page=2&page_size=5")
    assert second.json()["previous"] == "http://testserver/api/recipes/?page_size=5"

    for bad in ("4", "0", "-1", "abc", "\u00b2", "99999999999", str(10**20), str(2**31)):
        response = await client.get(f"/api/recipes/?page={bad}")
        assert response.status_code == 404
        assert response.json()["detail"] == "Invalid page."

    # DRF's last_page_strings: the last page by name, its links as for its number.
    last = await client.get("/api/recipes/?page=last")
    assert titles(last) == ["r02", "r01", "r00"]
    assert last.json()["next"] is None
    assert last.json()["previous"] == "http://testserver/api/recipes/?page=2"
    assert titles(await client.get("/api/recipes/?page=last&page_size=20")) == ["r02", "r01", "r00"]

    capped = await client.get("/api/recipes/?page_size=1000")
    assert len(capped.json()["results"]) == 23
    await seed(session_maker, [{"title": f"more{i}"} for i in range(100)])
    assert len((await client.get("/api/recipes/?page_size=1000")).json()["results"]) == 100


async def test_empty_catalogue_has_a_first_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/recipes/")
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}
    last = await client.get("/api/recipes/?page=last")
    assert last.json() == {"count": 0, "next": None, "previous": None, "results": []}


async def test_a_bad_token_is_a_401_on_the_public_list(
    client: httpx.AsyncClient, users: Users
) -> None:
    """DRF authenticates before permissions: a token sent must be valid, even where none is
    needed (the detail already answered so; the list now does as well)."""
    await create_recipe(client, users.seller())
    garbage = await client.get("/api/recipes/", headers={"Authorization": "Bearer garbage"})
    assert garbage.status_code == 401
    assert garbage.json()["code"] == "token_not_valid"
    assert (await client.get("/api/recipes/", headers=users.customer())).status_code == 200
    assert (await client.get("/api/recipes/")).status_code == 200


@pytest.mark.parametrize("segment", ["abc", "1.5", "-1", "\u0663", "0", str(2**31), "9" * 5000])
async def test_an_id_that_is_not_a_positive_integer_is_a_404(
    client: httpx.AsyncClient, users: Users, segment: str
) -> None:
    """As the original's ``<int:pk>`` URL pattern: no match is a 404, not a 400."""
    recipe = await create_recipe(client, users.seller())
    for path in (f"/api/recipes/{segment}/", f"/api/recipes/{segment}/ratings/"):
        response = await client.get(path)
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), path
    rate = await client.post(
        f"/api/recipes/{segment}/rate/", json={"score": 1}, headers=users.customer()
    )
    assert rate.status_code == 404
    assert (await client.get(f"/api/recipes/{recipe['id']:03}/")).status_code == 200


async def test_links_follow_the_gateway_headers(
    client: httpx.AsyncClient, session_maker: SessionMaker
) -> None:
    await seed(session_maker, [{"title": f"r{i}"} for i in range(3)])
    response = await client.get(
        "/api/recipes/?page_size=1&seller=chef",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "recipes.example.org"},
    )
    assert response.json()["next"] == (
        "https://recipes.example.org/api/recipes/?page_size=1&seller=chef&page=2"
    )


async def test_filters(client: httpx.AsyncClient, session_maker: SessionMaker) -> None:
    jan = datetime(2024, 1, 15, tzinfo=UTC)
    await seed(
        session_maker,
        [
            {
                "title": "a",
                "seller_username": "ann",
                "rating_sum": 9,
                "rating_count": 2,
                "created_at": jan,
            },
            {
                "title": "b",
                "seller_username": "bob",
                "rating_sum": 3,
                "rating_count": 1,
                "created_at": jan + timedelta(days=30),
            },
            {"title": "c", "seller_username": "ann", "created_at": jan + timedelta(days=60)},
        ],
    )
    assert titles(await client.get("/api/recipes/?seller=ann")) == ["c", "a"]
    assert titles(await client.get("/api/recipes/?min_rating=4")) == ["a"]
    assert titles(await client.get("/api/recipes/?min_rating=3&seller=bob")) == ["b"]
    after = await client.get("/api/recipes/?created_after=2024-02-01T00:00:00Z")
    assert titles(after) == ["c", "b"]
    assert titles(await client.get("/api/recipes/?created_before=2024-02-01")) == ["a"]
    bad = await client.get("/api/recipes/?min_rating=lots")
    assert bad.status_code == 400 and "min_rating" in bad.json()


async def test_orderings(client: httpx.AsyncClient, session_maker: SessionMaker) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    await seed(
        session_maker,
        [
            {"title": "Beta", "rating_sum": 5, "rating_count": 1, "created_at": start},
            {
                "title": "alpha",
                "rating_sum": 36,
                "rating_count": 8,
                "created_at": start + timedelta(days=1),
            },
            {
                "title": "Gamma",
                "rating_sum": 6,
                "rating_count": 3,
                "created_at": start + timedelta(days=2),
            },
        ],
    )

    async def order(value: str) -> list[str]:
        return titles(await client.get(f"/api/recipes/?ordering={value}"))

    assert await order("-created_at") == ["Gamma", "alpha", "Beta"]
    assert await order("created_at") == ["Beta", "alpha", "Gamma"]
    assert await order("-avg_rating") == ["Beta", "alpha", "Gamma"]
    assert await order("-rating_count") == ["alpha", "Gamma", "Beta"]
    assert sorted(await order("title")) == sorted(["Beta", "alpha", "Gamma"])
    # A single 5-star vote does not top the list: 4.5 over 8 votes beats it.
    assert await order("popular") == ["alpha", "Beta", "Gamma"]
    response = await client.get("/api/recipes/?ordering=password")
    assert response.status_code == 400


async def test_popular_uses_the_site_mean_for_few_votes(
    client: httpx.AsyncClient, session_maker: SessionMaker
) -> None:
    # C = (5 + 2*20) / (1 + 20) ≈ 2.14; with m = 3: one 5-star → (5 + 3C)/4 ≈ 2.86,
    # twenty 2-star → (40 + 3C)/23 ≈ 2.02, no vote at all → C ≈ 2.14.
    await seed(
        session_maker,
        [
            {"title": "one-five", "rating_sum": 5, "rating_count": 1},
            {"title": "many-twos", "rating_sum": 40, "rating_count": 20},
            {"title": "unrated"},
        ],
    )
    assert titles(await client.get("/api/recipes/?ordering=popular")) == [
        "one-five",
        "unrated",
        "many-twos",
    ]


async def test_full_text_search_is_weighted_and_ranked(
    client: httpx.AsyncClient, session_maker: SessionMaker
) -> None:
    await seed(
        session_maker,
        [
            {"title": "Tomato soup", "ingredients": "tomatoes, salt"},
            {"title": "Pasta", "description": "with a tomato sauce"},
            {"title": "Salad", "ingredients": "lettuce, tomato"},
            {"title": "Bread", "description": "flour and water"},
        ],
    )
    assert titles(await client.get("/api/recipes/?q=tomato")) == ["Tomato soup", "Pasta", "Salad"]
    assert titles(await client.get("/api/recipes/?q=tomatoes&ordering=title")) == [
        "Pasta",
        "Salad",
        "Tomato soup",
    ]
    assert titles(await client.get("/api/recipes/?q=flour -water")) == []
    assert titles(await client.get('/api/recipes/?q="flour and water"')) == ["Bread"]


@pytest.mark.parametrize(
    "query",
    [
        "'; DROP TABLE recipes; --",
        "%",
        "_",
        "\\",
        "tomato:*",
        "a & | ! ( ) <->",
        '"unbalanced',
        "' OR 1=1 --",
        "\x00",
        "   ",
        "é漢字🍅",
    ],
)
async def test_search_with_sql_metacharacters_never_errors(
    client: httpx.AsyncClient, session_maker: SessionMaker, query: str
) -> None:
    await seed(session_maker, [{"title": "Tomato soup"}])
    response = await client.get("/api/recipes/", params={"q": query})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert response.json()["count"] in (0, 1)
    assert (await client.get("/api/recipes/")).json()["count"] == 1


async def test_etag_and_conditional_get(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    recipe = await create_recipe(client, users.seller())
    for url in ("/api/recipes/", f"/api/recipes/{recipe['id']}/", "/api/recipes/1/ratings/"):
        url = url.replace("/1/", f"/{recipe['id']}/")
        response = await client.get(url)
        etag = response.headers["etag"]
        assert "max-age" in response.headers["cache-control"]
        not_modified = await client.get(url, headers={"If-None-Match": etag})
        assert not_modified.status_code == 304 and not_modified.content == b""
        assert not_modified.headers["etag"] == etag
        other = await client.get(url, headers={"If-None-Match": '"something-else"'})
        assert other.status_code == 200
    before = (await client.get("/api/recipes/")).headers["etag"]
    await client.post(
        f"/api/recipes/{recipe['id']}/rate/", json={"score": 5}, headers=users.customer()
    )
    changed = await client.get("/api/recipes/", headers={"If-None-Match": before})
    assert changed.status_code == 200 and changed.headers["etag"] != before
    owner_view = await client.get(f"/api/recipes/{recipe['id']}/", headers=users.seller())
    assert owner_view.headers["cache-control"].startswith("private")


async def test_a_list_takes_one_statement_whatever_the_page_size(
    app: FastAPI, client: httpx.AsyncClient, session_maker: SessionMaker
) -> None:
    await seed(
        session_maker,
        [{"title": f"r{i}", "rating_count": 1, "rating_sum": i % 5 + 1} for i in range(60)],
    )
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        counts = []
        for query in ("page_size=1", "page_size=50", "page_size=50&ordering=popular&q=r1"):
            statements.clear()
            assert (await client.get(f"/api/recipes/?{query}")).status_code == 200
            counts.append(len(statements))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert counts == [1, 1, 1]


async def test_a_conditional_get_is_answered_from_the_list_version_alone(
    app: FastAPI, client: httpx.AsyncClient, session_maker: SessionMaker
) -> None:
    await seed(session_maker, [{"title": f"r{i}"} for i in range(15)])
    etag = (await client.get("/api/recipes/")).headers["etag"]
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = await client.get("/api/recipes/", headers={"If-None-Match": etag})
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 304 and response.headers["etag"] == etag
    assert len(statements) == 1 and "recipe_list_versions" in statements[0]
    assert "public" in response.headers["cache-control"]


async def test_list_etag_depends_on_the_url_the_client_saw(
    client: httpx.AsyncClient, session_maker: SessionMaker
) -> None:
    await seed(session_maker, [{"title": f"r{i}"} for i in range(15)])
    first = (await client.get("/api/recipes/")).headers["etag"]
    forwarded = {"X-Forwarded-Host": "recipes.example.org", "X-Forwarded-Proto": "https"}
    for url, headers in [
        ("/api/recipes/?page=2", {}),
        ("/api/recipes/?ordering=title", {}),
        ("/api/recipes/", forwarded),
    ]:
        other = await client.get(url, headers={**headers, "If-None-Match": first})
        assert other.status_code == 200 and other.headers["etag"] != first
        again = await client.get(url, headers={**headers, "If-None-Match": other.headers["etag"]})
        assert again.status_code == 304


async def test_every_change_to_a_recipe_invalidates_the_list_etag(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    kept = await create_recipe(client, users.seller(7, "chef"))
    doomed = await create_recipe(client, users.seller(7, "chef"), title="Doomed")
    url = f"/api/recipes/{kept['id']}/"

    async def rename_seller() -> None:
        event = UserUpdated(
            user_id=7,
            username="renamed-chef",
            email="chef@x.org",
            role="seller",
            date_joined=datetime.now(UTC),
            updated_at=datetime.now(UTC),
            version=2,
        )
        async with session_maker() as session, session.begin():
            await service.rename_user(session=session, event=event)

    def rate(score: int) -> Awaitable[httpx.Response]:
        return client.post(url + "rate/", json={"score": score}, headers=users.customer())

    changes: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("create", lambda: create_recipe(client, users.seller(7, "chef"), title="New")),
        ("update", lambda: client.patch(url, json={"title": "Soup 2"}, headers=users.seller(7))),
        ("rate", lambda: client.post(url + "rate/", json={"score": 4}, headers=users.customer())),
        (
            "re-rate",
            lambda: client.post(url + "rate/", json={"score": 2}, headers=users.customer()),
        ),
        # No API field and no updated_at change: only the trigger on the table sees it.
        ("rename", rename_seller),
        ("delete", lambda: client.delete(f"/api/recipes/{doomed['id']}/", headers=users.seller(7))),
    ]
    for what, change in changes:
        before = await client.get("/api/recipes/")
        etag = before.headers["etag"]
        assert (
            await client.get("/api/recipes/", headers={"If-None-Match": etag})
        ).status_code == 304
        await change()
        after = await client.get("/api/recipes/", headers={"If-None-Match": etag})
        assert after.status_code == 200, what
        assert after.headers["etag"] != etag and after.json() != before.json(), what


async def test_a_rolled_back_change_keeps_the_list_etag(
    client: httpx.AsyncClient, session_maker: SessionMaker
) -> None:
    await seed(session_maker, [{"title": "r"}])
    etag = (await client.get("/api/recipes/")).headers["etag"]
    async with session_maker() as session, session.begin():
        await session.execute(text("UPDATE recipes SET title = 'changed'"))
        await session.rollback()
    assert (await client.get("/api/recipes/", headers={"If-None-Match": etag})).status_code == 304


async def test_the_unfiltered_count_follows_every_insert_delete_and_truncate(
    client: httpx.AsyncClient, users: Users, session_maker: SessionMaker
) -> None:
    """The unfiltered list's count comes from the count shards (migration 0007), not count(*)."""

    async def listed() -> int:
        response = await client.get("/api/recipes/")
        assert response.status_code == 200, response.text
        return int(response.json()["count"])

    async def sql(statement: str) -> None:
        async with session_maker() as session, session.begin():
            await session.execute(text(statement))

    async def counted() -> int:
        async with session_maker() as session:
            return int((await session.execute(text("SELECT count(*) FROM recipes"))).scalar_one())

    assert await listed() == 0
    first = await create_recipe(client, users.seller(7, "chef"))
    await create_recipe(client, users.seller(7, "chef"), title="Two")
    await seed(session_maker, [{"title": f"seeded {i}"} for i in range(5)])
    assert await listed() == await counted() == 7
    await client.delete(f"/api/recipes/{first['id']}/", headers=users.seller(7))
    await sql("DELETE FROM recipes WHERE title LIKE 'seeded%' AND title < 'seeded 3'")
    await sql("DELETE FROM recipes WHERE false")
    assert await listed() == await counted() == 3
    async with session_maker() as session, session.begin():
        await session.execute(text("DELETE FROM recipes"))
        await session.rollback()
    assert await listed() == 3
    # Filtered lists still count their matches.
    assert (await client.get("/api/recipes/?q=seeded")).json()["count"] == 2
    await sql("TRUNCATE recipes CASCADE")
    assert await listed() == await counted() == 0
    await seed(session_maker, [{"title": "after truncate"}])
    assert await listed() == 1
