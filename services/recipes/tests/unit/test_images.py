import hashlib

import pytest

from recipes.images import image_path, image_reference, sign, signature_valid, sniff_image_type

KEY = b"k"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xd8\xff\xe0rest", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\nrest", "image/png"),
        (b"GIF87a...", "image/gif"),
        (b"GIF89a...", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"%PDF-1.4", None),
        (b"", None),
        (b"\xff\xd8", None),
    ],
)
def test_sniff_image_type(data: bytes, expected: str | None) -> None:
    assert sniff_image_type(data) == expected


def test_reference_is_signed_and_expires() -> None:
    reference = image_reference(
        recipe_id=3,
        image_version=2,
        sha256=hashlib.sha256(b"x").hexdigest(),
        size=1,
        content_type="image/png",
        base_url="http://recipes:8002/",
        key=KEY,
        ttl_seconds=100,
        now=1000.0,
    )
    signature = sign(image_path(3, 2), 1100, KEY)
    assert reference.url == (
        f"http://recipes:8002/internal/images/3/2?expires=1100&signature={signature}"
    )
    assert reference.expires_at.timestamp() == 1100
    assert signature_valid("/internal/images/3/2", 1100, signature, KEY, now=1099)
    assert not signature_valid("/internal/images/3/2", 1100, signature, KEY, now=1101)
    assert not signature_valid("/internal/images/3/1", 1100, signature, KEY, now=1000)
    assert not signature_valid("/internal/images/3/2", 1200, signature, KEY, now=1000)
    assert not signature_valid("/internal/images/3/2", 1100, signature, b"other", now=1000)
