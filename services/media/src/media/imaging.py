"""Validating and rendering one image: pure CPU work, run in worker processes.

Validation reads the header only (``Image.open`` decodes no pixels): the format must be one of
``ACCEPTED_FORMATS`` and the pixel count at most ``max_pixels``, so a decompression bomb is
refused before a byte of it is decoded. Large JPEGs are then decoded at reduced size (``draft``)
when the largest variant allows it. The EXIF orientation is applied, colours are converted to
sRGB from an embedded ICC profile, and then every piece of metadata (EXIF with GPS positions,
XMP, comments, the ICC profile) is dropped: outputs carry sRGB pixels only.
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
        width, height = oriented_size(image)
        try:
            if source_format == "JPEG":
                image.draft(None, draft_size(image, width))
            image.load()
            image = ImageOps.exif_transpose(image)
            image = normalise_mode(to_srgb(image))
        except ImageRejected:
            raise
        except Exception as exc:  # Pillow raises many types for broken files
            raise ImageRejected(DAMAGED, f"decoding failed: {exc!r}") from exc
    image.info.clear()
    variants = (_resized_jpeg(image, width, height), *_webp_variants(image, width, height))
    return RenderedImage(source_format, width, height, variants)


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


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """Width and height once the EXIF orientation is applied (read from the header)."""
    width, height = image.size
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # unreadable EXIF: exif_transpose will not rotate either
        orientation = 1
    return (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)


def draft_size(image: Image.Image, oriented_width: int) -> tuple[int, int]:
    """The smallest decoded size that still serves the widest variant (in stored axes)."""
    needed = min(max(WEBP_WIDTHS), oriented_width)
    # A request of 1 on the other axis lets the width alone decide the reduction; the 800x800
    # JPEG never needs more than the 1600-wide WebP does.
    return (needed, 1) if image.size[0] == oriented_width else (1, needed)


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
    return image.convert("RGBA" if has_alpha else "RGB")


def fit_within(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """The largest size with this aspect ratio inside ``box``, never larger than the source."""
    scale = min(1.0, box[0] / width, box[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def webp_widths(source_width: int) -> tuple[int, ...]:
    """The standard widths the source can serve without upscaling; at least one."""
    return tuple(w for w in WEBP_WIDTHS if w <= source_width) or (source_width,)


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _resized_jpeg(image: Image.Image, width: int, height: int) -> RenderedVariant:
    out = _resized(image, fit_within(width, height, RESIZED_BOX))
    if out.mode == "RGBA":
        flat = Image.new("RGB", out.size, "white")
        flat.paste(out, mask=out.getchannel("A"))
        out = flat
    return _encode(RESIZED_VARIANT, "jpeg", out, quality=RESIZED_QUALITY, optimize=True)


def _webp_variants(image: Image.Image, width: int, height: int) -> list[RenderedVariant]:
    variants = []
    for target in webp_widths(width):
        size = (target, max(1, round(height * target / width)))
        out = _resized(image, size)
        variants.append(_encode(f"w{target}", "webp", out, quality=WEBP_QUALITY))
    return variants


def _encode(
    name: str, fmt: Literal["jpeg", "webp"], image: Image.Image, **options: int | bool
) -> RenderedVariant:
    image.info.clear()  # no EXIF, XMP, ICC or comments can ride along
    buffer = io.BytesIO()
    image.save(buffer, fmt.upper(), **options)
    return RenderedVariant(name, fmt, image.width, image.height, buffer.getvalue())
