"""Downloading an original from the recipes service, and only from it.

A message names the URL, but the worker trusts only its configured origin: a reference to any
other scheme, host or port is refused without a request (it is logged, since only a bug or a
forged message produces one). The body is streamed with a byte cap and checked against the
reference's size and sha256. 403/404/410 mean the link expired or the image is gone: the job
fails for good. Timeouts, connection errors and 5xx propagate, so the event is retried.

A link expires (a day by default), but a dead letter may be replayed days later. With the
worker's credential (``MEDIA_RECIPES_CREDENTIAL``, sent as ``CREDENTIAL_HEADER``) the recipes
service honours an authentic link at any age while the recipe's image exists, so the worker
then ignores the expiry and lets the recipes service decide.
"""

import asyncio
import hashlib
import logging
from datetime import UTC, datetime

import httpx

from contracts import ImageReference
from media.errors import ImageRejected
from servicekit import context_fields, inject_headers, is_valid_request_id

logger = logging.getLogger(__name__)

GONE_STATUSES = frozenset({403, 404, 410})
UNAVAILABLE = "The uploaded file is no longer available; please upload the image again."
#: The recipes service's ``MEDIA_CREDENTIAL_HEADER`` (services share no code, only the name).
CREDENTIAL_HEADER = "X-Media-Credential"
NOT_INTACT = "The uploaded file could not be read back intact; please upload the image again."


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default_port


class OriginalFetcher:
    def __init__(
        self,
        *,
        allowed_origin: str,
        max_bytes: int,
        timeout: float,
        deadline: float,
        credential: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._origin = _origin(httpx.URL(allowed_origin))
        self._credential = credential
        self._max_bytes = max_bytes
        self._deadline = deadline
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False, transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def check_reference(self, reference: ImageReference, *, now: datetime | None = None) -> None:
        """Refuse a reference this worker must not follow, before any request."""
        try:
            url = httpx.URL(reference.url)
        except httpx.InvalidURL as exc:
            raise ImageRejected(UNAVAILABLE, f"invalid image URL: {exc}") from exc
        if _origin(url) != self._origin:
            logger.error("refusing image URL outside the recipes origin: %s", reference.url)
            raise ImageRejected(UNAVAILABLE, f"URL outside the allowed origin: {reference.url}")
        if reference.size > self._max_bytes:
            raise ImageRejected(self._too_big(), f"reference declares {reference.size} bytes")
        if self._credential is None and reference.expires_at <= (now or datetime.now(UTC)):
            raise ImageRejected(UNAVAILABLE, f"link expired at {reference.expires_at}")

    async def fetch(self, reference: ImageReference) -> bytes:
        """The original's bytes, verified against the reference."""
        self.check_reference(reference)
        async with asyncio.timeout(self._deadline):
            data = await self._download(reference)
        if len(data) != reference.size:
            raise ImageRejected(NOT_INTACT, f"got {len(data)} bytes, expected {reference.size}")
        if hashlib.sha256(data).hexdigest() != reference.sha256:
            raise ImageRejected(NOT_INTACT, "sha256 differs from the reference")
        return data

    async def _download(self, reference: ImageReference) -> bytes:
        # Never read more than the reference announced: a longer body is wrong anyway.
        cap = min(reference.size, self._max_bytes)
        # Trace context and request id go along: serving the original stays in the upload's trace.
        headers = inject_headers()
        # Only a valid id: it came from a client once, and httpx refuses a non-ASCII header.
        correlation_id = context_fields().get("correlation_id")
        if isinstance(correlation_id, str) and is_valid_request_id(correlation_id):
            headers["X-Request-ID"] = correlation_id
        if self._credential is not None:
            headers[CREDENTIAL_HEADER] = self._credential
        async with self._client.stream("GET", reference.url, headers=headers) as response:
            if response.status_code in GONE_STATUSES:
                raise ImageRejected(UNAVAILABLE, f"recipes answered {response.status_code}")
            if response.status_code != 200:
                raise httpx.HTTPStatusError(
                    f"recipes answered {response.status_code} for an original",
                    request=response.request,
                    response=response,
                )
            chunks: list[bytes] = []
            received = 0
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > cap:
                    raise ImageRejected(NOT_INTACT, f"body longer than {cap} bytes")
                chunks.append(chunk)
        return b"".join(chunks)

    def _too_big(self) -> str:
        return f"The file is too big: at most {self._max_bytes // (1024 * 1024)} MB are accepted."
