"""Originals served the way the recipes service serves them, through an httpx MockTransport."""

import hashlib
import time
from datetime import UTC, datetime, timedelta

import httpx

from contracts import ImageReference
from media.fetch import CREDENTIAL_HEADER

RECIPES_URL = "http://recipes.internal:8002"


#: What the stand-in accepts as the media worker's credential.
CREDENTIAL = "test-media-credential"


class OriginalsServer:
    """Serves ``/internal/images/{recipe}/{version}``; ``statuses`` overrides the answer.

    Like the recipes service, it refuses (403) a link past its ``expires`` unless the request
    carries the worker's credential.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.statuses: dict[str, int] = {}
        self.requests: list[str] = []

    def add(
        self,
        recipe_id: int,
        image_version: int,
        data: bytes,
        *,
        content_type: str = "image/jpeg",
        declared: bytes | None = None,
        expires_in: timedelta = timedelta(hours=1),
    ) -> ImageReference:
        """Store an original; ``declared`` puts another file's size and hash in the reference."""
        path = f"/internal/images/{recipe_id}/{image_version}"
        self.files[path] = data
        described = data if declared is None else declared
        expires_at = datetime.now(UTC) + expires_in
        return ImageReference.model_validate(
            {
                "image_version": image_version,
                "url": f"{RECIPES_URL}{path}?expires={int(expires_at.timestamp())}&signature=abc",
                "sha256": hashlib.sha256(described).hexdigest(),
                "size": max(1, len(described)),
                "content_type": content_type,
                "expires_at": expires_at,
            }
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append(path)
        if path in self.statuses:
            return httpx.Response(self.statuses[path])
        if path not in self.files:
            return httpx.Response(404)
        expired = int(request.url.params.get("expires", "0")) < time.time()
        if expired and request.headers.get(CREDENTIAL_HEADER) != CREDENTIAL:
            return httpx.Response(403)
        return httpx.Response(200, content=self.files[path])

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)
