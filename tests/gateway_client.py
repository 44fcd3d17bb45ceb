"""An HTTP client for the gateway that waits out its sign-in limit instead of failing.

The gateway lets one address sign in 5 times a second (burst 10; README, "Clients of the
original backend"), and every test of a run signs in from 127.0.0.1: a quick enough run
outpaces that, and a test then failed or passed by the speed of the machine. This client
does what a well-behaved client does with the gateway's 429: wait ``Retry-After`` and send
again. The tests of the limit itself use a plain ``httpx.Client``, and the auth service's own
throttle (another code) is never retried.
"""

import time

import httpx

SIGN_IN = "/api/auth/token/"
#: The code of the gateway's own 429 (deploy/gateway/nginx.conf.template, @too_many_requests).
GATEWAY_LIMIT_CODE = "rate_limited"
#: Enough waits for a whole test run's sign-ins to get through a 5 r/s bucket.
MAX_WAITS = 30


class PacedSignIns(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(MAX_WAITS):
            response = self._inner.handle_request(request)
            if not _gateway_limited(request, response):
                return response
            response.close()
            time.sleep(float(response.headers.get("Retry-After", "1")))
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _gateway_limited(request: httpx.Request, response: httpx.Response) -> bool:
    if request.url.path != SIGN_IN or response.status_code != 429:
        return False
    response.read()
    try:
        return bool(response.json().get("code") == GATEWAY_LIMIT_CODE)
    except ValueError:
        return False


def gateway_client(base_url: str) -> httpx.Client:
    """A client of the gateway at ``base_url`` whose sign-ins wait out the gateway's limit."""
    return httpx.Client(base_url=base_url, timeout=30, transport=PacedSignIns())
