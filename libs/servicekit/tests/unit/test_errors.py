"""Every error leaves a service as JSON with a 4xx, or a 503 the client may retry."""

from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI
from pydantic import BaseModel

from servicekit._errors import NotFound
from servicekit._http import install_http_basics


class Item(BaseModel):
    name: str
    size: int


def app() -> FastAPI:
    application = FastAPI()
    install_http_basics(application)

    @application.post("/items/")
    async def create(item: Item) -> Item:
        return item

    @application.get("/missing/")
    async def missing() -> None:
        raise NotFound("No such thing.")

    @application.get("/database-down/")
    async def database_down() -> None:
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError())

    @application.get("/pool-exhausted/")
    async def pool_exhausted() -> None:
        raise sqlalchemy.exc.TimeoutError("QueuePool limit reached")

    @application.get("/bug/")
    async def bug() -> None:
        raise RuntimeError("boom")

    return application


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_validation_errors_keep_the_original_field_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/items/", json={"size": "big"})
    assert response.status_code == 400
    body = response.json()
    assert body["name"] == ["This field is required."]
    assert body["size"] and body["code"] == "invalid"


async def test_domain_errors_map_once(client: httpx.AsyncClient) -> None:
    response = await client.get("/missing/")
    assert (response.status_code, response.json()) == (
        404,
        {"detail": "No such thing.", "code": "not_found"},
    )


@pytest.mark.parametrize("path", ["/database-down/", "/pool-exhausted/"])
async def test_an_unavailable_database_is_a_retryable_503(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["code"] == "unavailable"


async def test_a_bug_is_a_json_500_without_details(client: httpx.AsyncClient) -> None:
    response = await client.get("/bug/")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error.", "code": "internal_error"}


async def test_unknown_routes_answer_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere/")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
