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
    assert signature_valid("/internal/images/3/2", "1100", signature, KEY, now=1099)
    assert not signature_valid("/internal/images/3/2", "1100", signature, KEY, now=1101)
    assert signature_valid("/internal/images/3/2", "1100", signature, KEY, now=None)
    assert not signature_valid("/internal/images/3/1", "1100", signature, KEY, now=1000)
    assert not signature_valid("/internal/images/3/2", "1200", signature, KEY, now=1000)
    assert not signature_valid("/internal/images/3/2", "1100", signature, b"other", now=1000)
    assert not signature_valid("/internal/images/3/1", "1100", signature, KEY, now=None)


@pytest.mark.parametrize(
    ("expires", "signature"),
    [
        ("\u00b2", "0" * 64),  # "²".isdigit() is True, int("²") raises
        ("\u0663", "0" * 64),  # Arabic-Indic three: int() would read 3
        ("", "0" * 64),
        ("1" * 5000, "0" * 64),  # int() refuses over 4300 digits
        ("1100", "\u00e9" * 64),  # compare_digest raises TypeError on non-ASCII text
        ("1100", "0" * 63),
        ("1100", "A" * 64),
    ],
)
def test_malformed_query_values_are_invalid_not_errors(expires: str, signature: str) -> None:
    assert not signature_valid("/internal/images/3/2", expires, signature, KEY, now=None)
