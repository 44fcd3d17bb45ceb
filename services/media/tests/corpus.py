"""Hostile and odd inputs, generated with Pillow (nothing binary is checked in)."""

import io
import random
import struct
import zlib
from dataclasses import dataclass
from typing import Literal

from PIL import ExifTags, Image, ImageDraw

RED = (220, 20, 20)
BLUE = (20, 20, 220)


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    content_type: Literal["image/jpeg", "image/png", "image/webp", "image/gif"]
    expected: Literal["ready", "failed"]


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noisy(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Noise compresses badly, so a truncated file really is missing pixels."""
    pixels = random.Random(size[0] * size[1]).randbytes(size[0] * size[1] * 3)
    return Image.frombytes("RGB", size, pixels).convert(mode)


def photo_like(size: tuple[int, int]) -> Image.Image:
    """Smooth shading, hard-edged shapes and fine grain: where resampling differences show."""
    shading = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize(size),
            Image.radial_gradient("L").resize(size),
            Image.linear_gradient("L").rotate(90).resize(size),
        ),
    )
    draw = ImageDraw.Draw(shading)
    width, height = size
    for n in range(12):
        left, top = width * n // 13, height * ((n * 5) % 12) // 13
        box = (left, top, left + width // 9, top + height // 9)
        draw.ellipse(box, fill=RED if n % 2 else BLUE, outline=(255, 255, 255), width=3)
    grain = Image.effect_noise(size, 40).convert("RGB")
    return Image.blend(shading, grain, 0.1)


def halves(
    size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]
) -> Image.Image:
    image = Image.new("RGB", size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header (with a valid CRC) declares ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (120, 80), color) for color in (RED, BLUE, (20, 220, 20))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def rotated_jpeg() -> bytes:
    """Stored 400x200, left red and right blue, with orientation 6 (display rotated 90° CW)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    return encode(halves((400, 200), RED, BLUE), "JPEG", quality=95, exif=exif)


def gps_jpeg() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestCam"
    exif[ExifTags.Base.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (48.0, 51.0, 24.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (2.0, 21.0, 3.0),
    }
    return encode(Image.new("RGB", (320, 240), BLUE), "JPEG", exif=exif)


def sixteen_bit_png() -> bytes:
    return encode(Image.new("I;16", (300, 200), 40000), "PNG")


def alpha_png() -> bytes:
    image = Image.new("RGBA", (300, 200), (*RED, 255))
    image.paste((0, 0, 0, 0), (0, 0, 150, 200))  # left half fully transparent
    return encode(image, "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (300, 200), (0, 230, 230, 20)), "JPEG")


def truncated_jpeg() -> bytes:
    whole = encode(noisy((640, 480)), "JPEG", quality=90)
    return whole[: len(whole) // 2]


SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
    b'<rect width="100" height="100" fill="red"/></svg>\n'
)


def hostile_corpus() -> list[Sample]:
    """Every input of issue 5's acceptance list, with the outcome it must give."""
    return [
        Sample("zero-bytes", b"", "image/jpeg", "failed"),
        Sample("truncated-jpeg", truncated_jpeg(), "image/jpeg", "failed"),
        Sample("text-named-jpg", b"just some text, not a photo\n" * 4, "image/jpeg", "failed"),
        Sample("svg", SVG, "image/png", "failed"),
        Sample("png-30000x30000", png_declaring(30000, 30000), "image/png", "failed"),
        Sample("animated-gif", animated_gif(), "image/gif", "ready"),
        Sample("cmyk-jpeg", cmyk_jpeg(), "image/jpeg", "ready"),
        Sample("sixteen-bit-png", sixteen_bit_png(), "image/png", "ready"),
        Sample("alpha-png", alpha_png(), "image/png", "ready"),
        Sample("exif-rotated-jpeg", rotated_jpeg(), "image/jpeg", "ready"),
        Sample("gps-jpeg", gps_jpeg(), "image/jpeg", "ready"),
    ]
