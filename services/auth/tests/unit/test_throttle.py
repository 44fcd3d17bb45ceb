import pytest
from starlette.requests import Request

from auth.throttle import Throttled, client_address


def _request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return Request({"type": "http", "headers": headers, "client": (peer, 1234)})


@pytest.mark.parametrize(
    ("forwarded", "trusted", "expected"),
    [
        ("203.0.113.9, 10.0.0.2", True, "10.0.0.2"),  # the client wrote the first hop
        ("203.0.113.9", False, "10.0.0.1"),
        ("not-an-address", True, "10.0.0.1"),
        (None, True, "10.0.0.1"),
        ("2001:db8::1", True, "2001:db8::1"),
    ],
)
def test_client_address(forwarded: str | None, trusted: bool, expected: str) -> None:
    request = _request("10.0.0.1", forwarded)
    assert client_address(request, trust_forwarded_for=trusted) == expected


def test_throttled_carries_retry_after() -> None:
    error = Throttled(42)
    assert error.status_code == 429
    assert error.headers == {"Retry-After": "42"}
    assert "42 seconds" in error.detail
