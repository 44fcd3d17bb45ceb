import io
import math

import pytest
from PIL import ExifTags, Image, ImageChops, ImageStat

from media.errors import ImageRejected
from media.imaging import (
    RenderedImage,
    RenderedVariant,
    fit_within,
    render_variants,
    resize_all,
    webp_widths,
)

from ..corpus import BLUE, RED, Sample, alpha_png, encode, hostile_corpus, noisy, photo_like

MAX_PIXELS = 40_000_000


def decoded(variant: RenderedVariant) -> Image.Image:
    image = Image.open(io.BytesIO(variant.data))
    image.load()
    return image


def variant(rendered: RenderedImage, name: str) -> RenderedVariant:
    return next(v for v in rendered.variants if v.name == name)


def close_to(pixel: object, expected: tuple[int, ...], tolerance: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


@pytest.mark.parametrize("sample", hostile_corpus(), ids=lambda s: s.name)
def test_every_corpus_input_gives_variants_or_a_reason(sample: Sample) -> None:
    try:
        rendered = render_variants(sample.data, max_pixels=MAX_PIXELS)
    except ImageRejected as exc:
        assert sample.expected == "failed"
        assert exc.reason.endswith(".") and len(exc.reason) > 10
        return
    assert sample.expected == "ready"
    for item in rendered.variants:
        image = decoded(item)
        assert image.size == (item.width, item.height)
        assert image.format == item.format.upper()
        # No metadata of any kind survives: EXIF (GPS), XMP, ICC profile, comments.
        assert not image.getexif()
        assert not {"exif", "xmp", "icc_profile", "comment"} & set(image.info)
        assert b"Exif" not in item.data


def test_reasons_name_the_problem() -> None:
    reasons = {}
    for sample in hostile_corpus():
        if sample.expected == "failed":
            with pytest.raises(ImageRejected) as caught:
                render_variants(sample.data, max_pixels=MAX_PIXELS)
            reasons[sample.name] = caught.value.reason
    assert "empty" in reasons["zero-bytes"]
    assert "damaged" in reasons["truncated-jpeg"]
    assert "not a supported image" in reasons["text-named-jpg"]
    assert "not a supported image" in reasons["svg"]
    assert "40 megapixels" in reasons["png-30000x30000"]


def test_megapixel_limit_comes_from_the_header_and_is_configurable() -> None:
    data = encode(Image.new("RGB", (2000, 1000), RED), "PNG")
    with pytest.raises(ImageRejected, match=r"at most 1\.5 megapixels"):
        render_variants(data, max_pixels=1_500_000)
    assert render_variants(data, max_pixels=2_000_000).source_width == 2000


def test_exif_rotated_jpeg_comes_out_upright() -> None:
    sample = next(s for s in hostile_corpus() if s.name == "exif-rotated-jpeg")
    rendered = render_variants(sample.data, max_pixels=MAX_PIXELS)
    assert (rendered.source_width, rendered.source_height) == (200, 400)
    image = decoded(variant(rendered, "resized")).convert("RGB")
    assert image.size == (200, 400)
    # Orientation 6 turns the stored left (red) half into the top of the displayed image.
    assert close_to(image.getpixel((100, 50)), RED)
    assert close_to(image.getpixel((100, 350)), BLUE)


def test_gps_exif_is_dropped() -> None:
    sample = next(s for s in hostile_corpus() if s.name == "gps-jpeg")
    assert Image.open(io.BytesIO(sample.data)).getexif().get_ifd(0x8825)  # the input has GPS
    for item in render_variants(sample.data, max_pixels=MAX_PIXELS).variants:
        assert not decoded(item).getexif()
        assert b"TestCam" not in item.data


def test_alpha_is_flattened_on_white_for_jpeg_and_kept_for_webp() -> None:
    rendered = render_variants(alpha_png(), max_pixels=MAX_PIXELS)
    jpeg = decoded(variant(rendered, "resized"))
    assert jpeg.mode == "RGB"
    assert close_to(jpeg.getpixel((10, 100)), (255, 255, 255))
    assert close_to(jpeg.getpixel((290, 100)), RED)
    webp = decoded(variant(rendered, "w200"))
    assert webp.mode == "RGBA"
    assert webp.getpixel((5, 60))[3] == 0  # type: ignore[index]
    assert webp.getpixel((195, 60))[3] == 255  # type: ignore[index]


def test_cmyk_jpeg_becomes_rgb_with_its_colour() -> None:
    sample = next(s for s in hostile_corpus() if s.name == "cmyk-jpeg")
    image = decoded(variant(render_variants(sample.data, max_pixels=MAX_PIXELS), "resized"))
    assert image.mode == "RGB"
    red, green, blue = image.getpixel((150, 100))  # type: ignore[misc]
    assert red > 180 and green < 60 and blue < 60


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    sample = next(s for s in hostile_corpus() if s.name == "sixteen-bit-png")
    image = decoded(variant(render_variants(sample.data, max_pixels=MAX_PIXELS), "resized"))
    # 40000 / 65535 of full scale, not clipped to white.
    assert close_to(image.getpixel((10, 10)), (156, 156, 156), tolerance=3)


def test_animated_gif_gives_its_first_frame() -> None:
    sample = next(s for s in hostile_corpus() if s.name == "animated-gif")
    image = decoded(variant(render_variants(sample.data, max_pixels=MAX_PIXELS), "resized"))
    assert close_to(image.getpixel((60, 40)), RED)


def test_large_jpeg_gets_every_variant_within_its_box() -> None:
    data = encode(noisy((3400, 2550)), "JPEG", quality=80)
    rendered = render_variants(data, max_pixels=MAX_PIXELS)
    sizes = {v.name: (v.width, v.height) for v in rendered.variants}
    assert sizes == {
        "resized": (800, 600),
        "w200": (200, 150),
        "w400": (400, 300),
        "w800": (800, 600),
        "w1600": (1600, 1200),
        "original": (3400, 2550),
    }
    for item in rendered.variants:
        assert decoded(item).size == (item.width, item.height)


def test_small_image_is_never_upscaled() -> None:
    rendered = render_variants(encode(Image.new("RGB", (150, 90), BLUE), "PNG"), max_pixels=10**6)
    assert [(v.name, v.width, v.height) for v in rendered.variants] == [
        ("resized", 150, 90),
        ("w150", 150, 90),
        ("original", 150, 90),
    ]


@pytest.mark.parametrize(
    ("size", "box", "expected"),
    [((4000, 3000), (800, 800), (800, 600)), ((300, 1200), (800, 800), (200, 800))],
)
def test_fit_within(size: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]) -> None:
    assert fit_within(*size, box) == expected


def test_webp_widths_skip_those_wider_than_the_source() -> None:
    assert webp_widths(1000) == (200, 400, 800)
    assert webp_widths(5000) == (200, 400, 800, 1600)
    assert webp_widths(120) == (120,)


def test_the_full_size_copy_keeps_every_pixel_and_no_metadata() -> None:
    """``original_image``: the upload's size (as displayed), without its EXIF, GPS or comments."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored 400x300, displayed 300x400
    exif[ExifTags.Base.Make] = "PhoneCo"
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] = (52.0, 13.0, 0.0)
    data = encode(noisy((400, 300)), "JPEG", quality=90, exif=exif, comment=b"at home")
    assert b"PhoneCo" in data and b"at home" in data
    copy = variant(render_variants(data, max_pixels=MAX_PIXELS), "original")
    assert (copy.format, copy.width, copy.height) == ("jpeg", 300, 400)
    image = decoded(copy)
    assert image.size == (300, 400)
    assert not image.getexif() and "comment" not in image.info and "exif" not in image.info
    assert b"PhoneCo" not in copy.data and b"at home" not in copy.data


def test_the_full_size_copy_is_named_as_the_contract_says() -> None:
    from contracts import ORIGINAL_IMAGE_VARIANT
    from media.imaging import ORIGINAL_VARIANT

    assert ORIGINAL_VARIANT == ORIGINAL_IMAGE_VARIANT


def test_a_transparent_original_keeps_its_alpha_in_webp() -> None:
    copy = variant(render_variants(alpha_png(), max_pixels=MAX_PIXELS), "original")
    image = decoded(copy)
    assert (copy.format, image.mode, image.size) == ("webp", "RGBA", (300, 200))
    assert image.getpixel((5, 60))[3] == 0  # type: ignore[index]


def test_embedded_colour_profile_is_applied_then_dropped() -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with_profile = encode(Image.new("RGB", (300, 200), BLUE), "JPEG", icc_profile=srgb)
    broken_profile = encode(Image.new("RGB", (300, 200), BLUE), "JPEG", icc_profile=b"junk" * 40)
    for data in (with_profile, broken_profile):
        image = decoded(variant(render_variants(data, max_pixels=MAX_PIXELS), "resized"))
        assert "icc_profile" not in image.info
        assert close_to(image.getpixel((150, 100)), BLUE, tolerance=12)


def psnr(image: Image.Image, reference: Image.Image) -> float:
    rms = ImageStat.Stat(ImageChops.difference(image, reference)).rms
    mse = sum(r * r for r in rms) / len(rms)
    return 10 * math.log10(255**2 / mse) if mse else math.inf


LANCZOS = Image.Resampling.LANCZOS
WEBP_SIZES = [(1600, 1200), (800, 600), (400, 300), (200, 150)]


def test_each_size_is_resized_once_from_a_variant_at_least_twice_as_large() -> None:
    image = photo_like((2000, 1500))
    resized = resize_all(image, [(800, 600), *WEBP_SIZES, (1000, 750)])
    assert sorted(resized) == sorted([*WEBP_SIZES, (1000, 750)])
    # 1600 and 1000 have nothing twice their size but the original; 800 has the 1600 (not the
    # 1000, under 2x), and each smaller one the next larger.
    assert resized[(1000, 750)] == image.resize((1000, 750), LANCZOS, reducing_gap=3.0)
    sources = {(800, 600): (1600, 1200), (400, 300): (800, 600), (200, 150): (400, 300)}
    for size, source in sources.items():
        assert resized[size] == resized[source].resize(size, LANCZOS, reducing_gap=3.0)


def test_chained_resizes_look_like_resizing_from_the_original() -> None:
    image = photo_like((3200, 2400))
    resized = resize_all(image, WEBP_SIZES)
    for size in WEBP_SIZES:
        assert psnr(resized[size], image.resize(size, LANCZOS)) > 45


def test_the_resized_jpeg_and_the_webp_of_its_size_share_their_pixels() -> None:
    rendered = render_variants(encode(photo_like((1600, 1200)), "JPEG"), max_pixels=MAX_PIXELS)
    jpeg, webp = decoded(variant(rendered, "resized")), decoded(variant(rendered, "w800"))
    assert jpeg.size == webp.size == (800, 600)
    assert psnr(jpeg, webp) > 35  # only the two codecs' losses differ
