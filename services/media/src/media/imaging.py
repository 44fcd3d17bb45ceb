"""Validating and rendering one image: pure CPU work, run in worker processes.

Validation reads the header only (``Image.open`` decodes no pixels): the format must be one of
``ACCEPTED_FORMATS`` and the pixel count at most ``max_pixels``, so a decompression bomb is
refused before a byte of it is decoded. The EXIF orientation is applied, colours are converted to
sRGB from an embedded ICC profile, and then every piece of metadata (EXIF with GPS positions,
XMP, comments, the ICC profile) is dropped: outputs carry sRGB pixels only.

Besides the resized variants, ``ORIGINAL_VARIANT`` is a full-size copy (the original API's
``original_image``): the upload itself is never published, since a phone photo's EXIF carries
where it was taken. It needs the full decode, so JPEGs are no longer decoded at reduced size
(``draft``): about twice the decoding time of a large photo, the price of a public original
that cannot leak a location.

Each distinct size is resized once, largest first, and from the smallest image already made
that is at least ``CHAIN_FACTOR`` times as large (else from the decoded original): w800 from
w1600, w400 from w800, and the 800x600 JPEG shares the w800 pixels. LANCZOS from an image twice
the size keeps a photo above 50 dB PSNR against a resize from the original (as close as
``reducing_gap`` already was), with about a third less resizing work.
"""

import io
import warnings
from dataclasses import dataclass
from typing import Literal

from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError

from media.errors import ImageRejected

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
#: The original backend's ``resized_image_url``: fit within this box, never upscaled.
RESIZED_VARIANT = "resized"
RESIZED_BOX = (800, 800)
RESIZED_QUALITY = 85
#: Widths of the WebP variants; those wider than the source are skipped.
WEBP_WIDTHS = (200, 400, 800, 1600)
WEBP_QUALITY = 80
#: A variant is resized from a larger one already made when that is at least this much larger.
CHAIN_FACTOR = 2
#: The full-size copy, metadata stripped: JPEG, or WebP when it has transparency. It is
#: ``contracts.ORIGINAL_IMAGE_VARIANT`` (a test holds them equal), not imported from there:
#: pydantic would be most of the time a render process takes to start.
ORIGINAL_VARIANT = "original"
ORIGINAL_QUALITY = 90
#: WebP's largest side; a wider transparent image is flattened to JPEG instead.
WEBP_MAX_SIDE = 16383
#: Orientations (EXIF 274) that swap width and height.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))

DAMAGED = "The file is damaged or incomplete; please upload it again."
NOT_AN_IMAGE = "The file is not a supported image; please upload a JPEG, PNG, WebP or GIF."


@dataclass(frozen=True)
class RenderedVariant:
    name: str
    format: Literal["jpeg", "webp"]
    width: int
    height: int
    data: bytes

    @property
    def extension(self) -> str:
        return "jpg" if self.format == "jpeg" else "webp"

    @property
    def content_type(self) -> str:
        return f"image/{self.format}"


@dataclass(frozen=True)
class RenderedImage:
    source_format: str
    source_width: int
    source_height: int
    variants: tuple[RenderedVariant, ...]


def render_variants(data: bytes, *, max_pixels: int) -> RenderedImage:
    """Validate ``data`` and render every variant; raises ImageRejected for a hopeless file."""
    with warnings.catch_warnings():
        # Pillow's chatter must not depend on the caller's filters; a bomb must be an error.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = open_validated(data, max_pixels=max_pixels)
        source_format = str(image.format)
        orientation = exif_orientation(image)
        width, height = oriented_size(image, orientation)
        try:
            image.load()
            if orientation != 1:  # exif_transpose copies the whole image even when upright
                image = ImageOps.exif_transpose(image)
            image = normalise_mode(to_srgb(image))
        except ImageRejected:
            raise
        except Exception as exc:  # Pillow raises many types for broken files
            raise ImageRejected(DAMAGED, f"decoding failed: {exc!r}") from exc
    image.info.clear()
    variants = (*_variants(image, width, height), _full_size_copy(image))
    return RenderedImage(source_format, width, height, variants)


def warm_up() -> None:
    """Render a tiny JPEG, so that a new process has loaded every codec before a real image."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "white").save(buffer, "JPEG")
    render_variants(buffer.getvalue(), max_pixels=64 * 48)


def configure_pillow(max_pixels: int) -> None:
    """Set Pillow's own decompression-bomb guard in a worker process (a process-wide global)."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def open_validated(data: bytes, *, max_pixels: int) -> Image.Image:
    """The image with its header parsed and checked, pixels not yet decoded."""
    if not data:
        raise ImageRejected("The file is empty.")
    too_large = (
        f"The image is too large: at most {max_pixels / 1_000_000:g} megapixels are accepted."
    )
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(too_large, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(NOT_AN_IMAGE, str(exc)) from exc
    except Exception as exc:
        raise ImageRejected(DAMAGED, f"header unreadable: {exc!r}") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected(DAMAGED, f"declared size {width}x{height}")
    if width * height > max_pixels:
        raise ImageRejected(too_large, f"declared size {width}x{height}")
    return image


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 is upright), read from the header; 1 when EXIF is unreadable."""
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # unreadable EXIF: nothing says which way is up
        return 1


def oriented_size(image: Image.Image, orientation: int) -> tuple[int, int]:
    """Width and height once the EXIF orientation is applied."""
    width, height = image.size
    return (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)


def to_srgb(image: Image.Image) -> Image.Image:
    """Convert from an embedded colour profile (a phone's Display P3, a print shop's CMYK) to
    sRGB, since the profile itself is dropped; an unusable profile is ignored."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            image, source, _SRGB, outputMode="RGBA" if image.mode == "RGBA" else "RGB"
        )
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image
    assert converted is not None  # inPlace=False returns the new image
    return converted


def normalise_mode(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image has transparency; 16-bit scaled down, not clipped."""
    if image.mode in _SIXTEEN_BIT_MODES:
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    mode = "RGBA" if has_alpha else "RGB"
    return image if image.mode == mode else image.convert(mode)  # convert() always copies


def fit_within(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """The largest size with this aspect ratio inside ``box``, never larger than the source."""
    scale = min(1.0, box[0] / width, box[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def webp_widths(source_width: int) -> tuple[int, ...]:
    """The standard widths the source can serve without upscaling; at least one."""
    return tuple(w for w in WEBP_WIDTHS if w <= source_width) or (source_width,)


def resize_all(
    image: Image.Image, sizes: list[tuple[int, int]]
) -> dict[tuple[int, int], Image.Image]:
    """Every distinct size, largest first, each from the smallest image already made that is
    at least ``CHAIN_FACTOR`` times as large on both axes, else from ``image``."""
    resized: dict[tuple[int, int], Image.Image] = {}
    for size in sorted(set(sizes), key=lambda s: s[0] * s[1], reverse=True):
        larger = [
            made
            for made in resized.values()
            if made.width >= CHAIN_FACTOR * size[0] and made.height >= CHAIN_FACTOR * size[1]
        ]
        source = min(larger, key=lambda made: made.width * made.height, default=image)
        resized[size] = _resized(source, size)
    return resized


def _variants(image: Image.Image, width: int, height: int) -> tuple[RenderedVariant, ...]:
    """The JPEG and the WebPs, sized from the source's ``width`` and ``height`` (before draft)."""
    jpeg_size = fit_within(width, height, RESIZED_BOX)
    webp_sizes = {f"w{w}": (w, max(1, round(height * w / width))) for w in webp_widths(width)}
    resized = resize_all(image, [jpeg_size, *webp_sizes.values()])
    webps = (
        _encode(name, "webp", resized[size], quality=WEBP_QUALITY)
        for name, size in webp_sizes.items()
    )
    return (_jpeg_variant(resized[jpeg_size]), *webps)


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _flattened(image: Image.Image) -> Image.Image:
    """RGB on white: JPEG has no transparency."""
    if image.mode != "RGBA":
        return image
    flat = Image.new("RGB", image.size, "white")
    flat.paste(image, mask=image.getchannel("A"))
    return flat


def _jpeg_variant(image: Image.Image) -> RenderedVariant:
    return _encode(
        RESIZED_VARIANT, "jpeg", _flattened(image), quality=RESIZED_QUALITY, optimize=True
    )


def _full_size_copy(image: Image.Image) -> RenderedVariant:
    """``ORIGINAL_VARIANT``: every pixel of the upload, none of its metadata."""
    if image.mode == "RGBA" and max(image.size) <= WEBP_MAX_SIDE:
        return _encode(ORIGINAL_VARIANT, "webp", image, quality=ORIGINAL_QUALITY)
    return _encode(ORIGINAL_VARIANT, "jpeg", _flattened(image), quality=ORIGINAL_QUALITY)


def _encode(
    name: str, fmt: Literal["jpeg", "webp"], image: Image.Image, **options: int | bool
) -> RenderedVariant:
    image.info.clear()  # no EXIF, XMP, ICC or comments can ride along
    buffer = io.BytesIO()
    image.save(buffer, fmt.upper(), **options)
    return RenderedVariant(name, fmt, image.width, image.height, buffer.getvalue())
