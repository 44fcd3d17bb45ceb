"""JSON body limits: a deep (400) or oversized (413) body is refused before any route parses it."""

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from servicekit._bodies import MAX_JSON_BYTES, MAX_JSON_DEPTH, json_depth_exceeds
from servicekit._http import install_http_basics


class Echo(BaseModel):
    value: Any = None


def app() -> FastAPI:
    application = FastAPI()
    install_http_basics(application)

    @application.post("/echo/")
    async def echo(body: Echo) -> Echo:
        return body

    return application


async def post(content: bytes, content_type: str | None = "application/json") -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/echo/", content=content, headers=headers)


async def test_json_nested_20000_deep_is_a_400_not_a_recursion_error() -> None:
    response = await post(b'{"value": ' + b"[" * 20_000 + b"]" * 20_000 + b"}")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert "x-request-id" in response.headers


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "a+json", None])
async def test_the_depth_limit_holds_for_every_body_parsed_as_json(
    content_type: str | None,
) -> None:
    # FastAPI parses a body without a content type as JSON too.
    response = await post(b"[" * 20_000 + b"]" * 20_000, content_type)
    assert response.status_code == 400


async def test_a_body_over_the_size_limit_is_a_413() -> None:
    response = await post(json.dumps({"value": "x" * MAX_JSON_BYTES}).encode())
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert str(MAX_JSON_BYTES) in response.json()["detail"]


async def test_a_body_within_the_limits_reaches_the_route() -> None:
    nested: Any = "leaf"
    for _ in range(MAX_JSON_DEPTH - 1):
        nested = [nested]
    response = await post(json.dumps({"value": nested}).encode())
    assert response.status_code == 200
    assert response.json() == {"value": nested}


@pytest.mark.parametrize(
    ("body", "deep"),
    [
        (b'{"a": "' + b"[" * 500 + b'"}', False),  # brackets inside a string do not count
        (b'["\\"' + b"[" * 500 + b'"]', False),  # nor after an escaped quote
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), True),
        (b"[[]]" * 1000, False),  # many brackets, little depth
    ],
)
def test_depth_ignores_strings(body: bytes, deep: bool) -> None:
    assert json_depth_exceeds(body) is deep
