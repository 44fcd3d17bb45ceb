"""The web glue: routes served with and without their slash, dependencies on ``app.state``."""

from typing import Annotated

import httpx
from fastapi import APIRouter, FastAPI

from servicekit.fastapi import app_state, slash_tolerant_routes

Greeting = Annotated[str, app_state("greeting")]


def make_router() -> APIRouter:
    router = APIRouter(prefix="/api")
    route = slash_tolerant_routes(router)

    @route("/hello/", methods=["GET"])
    async def hello(greeting: Greeting) -> dict[str, str]:
        return {"greeting": greeting}

    @route("/file.json", methods=["GET"])
    async def file() -> dict[str, str]:
        return {}

    return router


def make_app() -> FastAPI:
    app = FastAPI(redirect_slashes=False)
    app.state.greeting = "hi"
    app.include_router(make_router())
    return app


async def test_a_path_is_served_with_and_without_its_slash_and_documented_once() -> None:
    transport = httpx.ASGITransport(make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with_slash = await client.get("/api/hello/")
        without = await client.get("/api/hello")
        schema = (await client.get("/openapi.json")).json()

    assert with_slash.json() == without.json() == {"greeting": "hi"}
    assert set(schema["paths"]) == {"/api/hello/", "/api/file.json"}


def test_a_path_without_a_slash_is_registered_once() -> None:
    paths = [getattr(r, "path", None) for r in make_router().routes]

    assert paths.count("/api/file.json") == 1
