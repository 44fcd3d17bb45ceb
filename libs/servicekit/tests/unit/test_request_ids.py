"""Request ids from clients: accepted only as short printable ASCII (issue 15)."""

import re

import httpx
import pytest
from fastapi import FastAPI

from servicekit._http import install_http_basics, request_id_var
from servicekit._request_ids import MAX_REQUEST_ID_LENGTH, accepted_request_id


def app_seeing_request_ids() -> FastAPI:
    app = FastAPI()
    install_http_basics(app)

    @app.get("/seen")
    async def seen() -> dict[str, str | None]:
        return {"request_id": request_id_var.get()}

    return app


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param("é".encode("latin-1") * 200, id="200-latin-1-e-acute"),
        pytest.param(b"a" * (MAX_REQUEST_ID_LENGTH + 1), id="over-long-ascii"),
        pytest.param(b"tab\there", id="control-character"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_an_unfit_request_id_is_replaced_by_a_fresh_one(sent: bytes) -> None:
    transport = httpx.ASGITransport(app_seeing_request_ids())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/seen", headers=[(b"X-Request-ID", sent)])

    used = response.json()["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", used)
    assert response.headers["x-request-id"] == used


async def test_a_fit_request_id_is_kept() -> None:
    longest = "Rq-" + "x" * (MAX_REQUEST_ID_LENGTH - 3)
    transport = httpx.ASGITransport(app_seeing_request_ids())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/seen", headers={"X-Request-ID": longest})

    assert response.json()["request_id"] == longest


def test_accepted_request_id() -> None:
    assert accepted_request_id("abc-123_~!") == "abc-123_~!"
    assert accepted_request_id(None) != accepted_request_id(None)
    assert accepted_request_id("é") != "é"
