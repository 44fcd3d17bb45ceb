from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from media.errors import ImageRejected
from media.fetch import NOT_INTACT, UNAVAILABLE, OriginalFetcher
from servicekit._logs import log_context

from ..originals import CREDENTIAL, RECIPES_URL, OriginalsServer

DATA = b"\xff\xd8\xff" + b"x" * 5000


@pytest.fixture
def server() -> OriginalsServer:
    return OriginalsServer()


@pytest.fixture
async def fetcher(server: OriginalsServer) -> AsyncIterator[OriginalFetcher]:
    fetcher = OriginalFetcher(
        allowed_origin=RECIPES_URL,
        max_bytes=10_000,
        timeout=1.0,
        deadline=5.0,
        transport=server.transport,
    )
    yield fetcher
    await fetcher.aclose()


async def test_fetches_and_verifies_the_original(
    server: OriginalsServer, fetcher: OriginalFetcher
) -> None:
    reference = server.add(1, 1, DATA)
    assert await fetcher.fetch(reference) == DATA


@pytest.mark.parametrize(
    "url",
    [
        "http://attacker.example:8002/internal/images/1/1",
        "http://recipes.internal:9999/internal/images/1/1",
        "https://recipes.internal:8002/internal/images/1/1",
        "file:///etc/passwd",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_refuses_any_other_origin_without_a_request(
    server: OriginalsServer, fetcher: OriginalFetcher, url: str
) -> None:
    reference = server.add(1, 1, DATA).model_copy(update={"url": url})
    with pytest.raises(ImageRejected) as caught:
        await fetcher.fetch(reference)
    assert caught.value.reason == UNAVAILABLE
    assert server.requests == []


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_gone_original_fails_for_good(
    server: OriginalsServer, fetcher: OriginalFetcher, status: int
) -> None:
    reference = server.add(1, 1, DATA)
    server.statuses["/internal/images/1/1"] = status
    with pytest.raises(ImageRejected, match="no longer available"):
        await fetcher.fetch(reference)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_server_errors_are_transient(
    server: OriginalsServer, fetcher: OriginalFetcher, status: int
) -> None:
    reference = server.add(1, 1, DATA)
    server.statuses["/internal/images/1/1"] = status
    with pytest.raises(httpx.HTTPStatusError):
        await fetcher.fetch(reference)


async def test_an_expired_link_is_followed_only_with_the_credential(
    server: OriginalsServer, fetcher: OriginalFetcher
) -> None:
    expired = server.add(1, 1, DATA, expires_in=timedelta(days=-3))
    with pytest.raises(ImageRejected, match="no longer available"):
        await fetcher.fetch(expired)
    assert server.requests == []  # refused without a request
    with_credential = OriginalFetcher(
        allowed_origin=RECIPES_URL,
        max_bytes=10_000,
        timeout=1.0,
        deadline=5.0,
        credential=CREDENTIAL,
        transport=server.transport,
    )
    assert await with_credential.fetch(expired) == DATA
    await with_credential.aclose()


async def test_timeouts_are_transient() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("too slow", request=request)

    fetcher = OriginalFetcher(
        allowed_origin=RECIPES_URL,
        max_bytes=10_000,
        timeout=1.0,
        deadline=5.0,
        transport=httpx.MockTransport(slow),
    )
    reference = OriginalsServer().add(1, 1, DATA)
    with pytest.raises(httpx.TimeoutException):
        await fetcher.fetch(reference)
    await fetcher.aclose()


async def test_other_bytes_than_referenced_are_refused(
    server: OriginalsServer, fetcher: OriginalFetcher
) -> None:
    same_size = server.add(1, 1, DATA, declared=DATA[:-1] + b"y")
    with pytest.raises(ImageRejected) as caught:
        await fetcher.fetch(same_size)
    assert caught.value.reason == NOT_INTACT and "sha256" in caught.value.detail
    longer_than_declared = server.add(1, 2, DATA, declared=DATA[:100])
    with pytest.raises(ImageRejected, match="longer than 100 bytes"):
        await fetcher.fetch(longer_than_declared)
    shorter = server.add(1, 3, DATA[:100], declared=DATA)
    with pytest.raises(ImageRejected, match="got 100 bytes"):
        await fetcher.fetch(shorter)


async def test_byte_cap_refuses_before_downloading(
    server: OriginalsServer, fetcher: OriginalFetcher
) -> None:
    reference = server.add(1, 1, b"z" * 20_000)
    with pytest.raises(ImageRejected, match="too big"):
        await fetcher.fetch(reference)
    assert server.requests == []


@pytest.mark.parametrize(
    ("correlation_id", "forwarded"),
    [("req-42", "req-42"), ("é" * 200, None), ("x" * 129, None)],
)
async def test_only_a_valid_correlation_id_goes_along_as_request_id(
    server: OriginalsServer, correlation_id: str, forwarded: str | None
) -> None:
    """It came from a client once; httpx refused 200 x 'é' and the image never got done."""
    seen: list[str | None] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-request-id"))
        return server.handle(request)

    fetcher = OriginalFetcher(
        allowed_origin=RECIPES_URL,
        max_bytes=10_000,
        timeout=1.0,
        deadline=5.0,
        transport=httpx.MockTransport(record),
    )
    reference = server.add(1, 1, DATA)
    with log_context(correlation_id=correlation_id):
        assert await fetcher.fetch(reference) == DATA
    await fetcher.aclose()
    assert seen == [forwarded]
