"""A bug answers one JSON 500 and leaves the keep-alive connection usable.

A gateway reuses upstream connections; if the server closed the connection after a 500, the
gateway could hand the next, unrelated request a 502.
"""

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from servicekit._errors import NotFound
from servicekit._http import install_http_basics


def app() -> FastAPI:
    application = FastAPI()
    install_http_basics(application)

    @application.get("/bug/")
    async def bug() -> None:
        raise RuntimeError("boom")

    @application.get("/missing/")
    async def missing() -> None:
        raise NotFound("No such thing.")

    return application


async def test_the_exception_does_not_escape_to_the_server() -> None:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/bug/")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error.", "code": "internal_error"}
    assert response.headers["x-request-id"]


@pytest.fixture
async def served_port() -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app(), host="127.0.0.1", port=port, log_level="error"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn.Server sets no event when started
        await asyncio.sleep(0.01)
    yield port
    server.should_exit = True
    await task


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


async def test_the_connection_serves_the_next_request_after_a_500(served_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served_port)
    try:
        request = "GET {} HTTP/1.1\r\nHost: test\r\nConnection: keep-alive\r\n\r\n"
        writer.write(request.format("/bug/").encode())
        head, _ = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 500")
        assert b"connection: close" not in head.lower()
        writer.write(request.format("/missing/").encode())
        head, body = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 404")
        assert b"not_found" in body
    finally:
        writer.close()
