"""Uploaded originals: type sniffing and the signed internal URLs the media service fetches.

A URL is ``{internal_base_url}/internal/images/{recipe_id}/{image_version}?expires=<unix>&
signature=<hex>``, where the signature is HMAC-SHA256 with ``image_url_secret`` over
``"{path}\\n{expires}"``. Only the path and the expiry are signed: the base URL may differ
between the service that signs and the one that serves (both are this service).

The expiry bounds what a leaked link is worth, but a message dead-lettered and replayed days
later must still reach its original while the recipe exists. So the media worker presents a
credential of its own (``MEDIA_CREDENTIAL_HEADER``, the ``media_credential`` setting): with it,
an authentic link is honoured at any age. The signature is still required, so the credential
alone reads nothing the recipes service did not once hand out.
"""

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts import ImageReference

#: Magic bytes of the formats the media service accepts, first match wins.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
)

IMAGE_PATH_PREFIX = "/internal/images"
#: Carries the media worker's credential (``Settings.media_credential``).
MEDIA_CREDENTIAL_HEADER = "X-Media-Credential"


def sniff_image_type(data: bytes) -> str | None:
    """The content type of ``data`` by its magic bytes, or None if it is not an accepted image."""
    for magic, offset, content_type in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return content_type
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True)
class UploadedImage:
    data: bytes
    content_type: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)


def image_path(recipe_id: int, image_version: int) -> str:
    return f"{IMAGE_PATH_PREFIX}/{recipe_id}/{image_version}"


def sign(path: str, expires: int, key: bytes) -> str:
    return hmac.new(key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


#: ``expires`` as signed: ASCII digits only (``isdigit`` alone also admits "²" and "٣").
_EXPIRES = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


def signature_valid(
    path: str, expires: str, signature: str, key: bytes, *, now: float | None
) -> bool:
    """True when ``signature`` is this path's and the URL has not expired (``now`` None: at
    any age, for the media worker's own credential).

    Both query values come from the URL as sent: anything but the shapes ``sign`` writes is
    invalid (never an error: ``compare_digest`` refuses non-ASCII text with TypeError).
    """
    if not (_EXPIRES.fullmatch(expires) and _SIGNATURE.fullmatch(signature)):
        return False
    if now is not None and int(expires) < now:
        return False
    return hmac.compare_digest(sign(path, int(expires), key), signature)


def image_reference(
    *,
    recipe_id: int,
    image_version: int,
    sha256: str,
    size: int,
    content_type: str,
    base_url: str,
    key: bytes,
    ttl_seconds: int,
    now: float | None = None,
) -> ImageReference:
    """A signed, expiring reference to a stored original."""
    expires = int((time.time() if now is None else now) + ttl_seconds)
    path = image_path(recipe_id, image_version)
    url = f"{base_url.rstrip('/')}{path}?expires={expires}&signature={sign(path, expires, key)}"
    return ImageReference.model_validate(
        {
            "image_version": image_version,
            "url": url,
            "sha256": sha256,
            "size": size,
            "content_type": content_type,
            "expires_at": datetime.fromtimestamp(expires, UTC),
        }
    )
