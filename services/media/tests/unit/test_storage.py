from pathlib import Path

import cloudinary.exceptions
import pytest

from media.imaging import RenderedVariant, render_variants
from media.storage import CloudinaryStorage, LocalStorage, asset_path, is_transient

from ..cloudinary_standin import CloudinaryStandIn
from ..corpus import gps_jpeg


def variants() -> tuple[RenderedVariant, ...]:
    return render_variants(gps_jpeg(), max_pixels=10**6).variants


def storage_for(standin: CloudinaryStandIn, *, secret: str | None = None) -> CloudinaryStorage:
    return CloudinaryStorage(
        cloud_name=standin.cloud_name,
        api_key=standin.api_key,
        api_secret=secret or standin.api_secret,
        upload_prefix=standin.url,
        timeout=5.0,
        retry_delays=(0.01, 0.02),
    )


def test_asset_paths_are_deterministic() -> None:
    assert asset_path(12, 3, "w400") == "recipes/12/v3/w400"


async def test_local_storage_writes_under_deterministic_paths_and_purges(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, "http://127.0.0.1:8080/media")
    resized = variants()[0]
    url = await storage.store(5, 2, resized)
    assert url == "http://127.0.0.1:8080/media/recipes/5/v2/resized.jpg"
    assert (tmp_path / "recipes/5/v2/resized.jpg").read_bytes() == resized.data
    await storage.store(5, 2, resized)  # a retry overwrites in place
    await storage.store(5, 3, resized)
    assert sorted(p.name for p in (tmp_path / "recipes/5").iterdir()) == ["v2", "v3"]
    await storage.purge(5, [2])
    assert [p.name for p in (tmp_path / "recipes/5").iterdir()] == ["v3"]
    await storage.purge(5, [3])
    assert not (tmp_path / "recipes/5").exists()


async def test_cloudinary_upload_is_signed_and_lands_on_the_public_id(
    cloudinary_standin: CloudinaryStandIn,
) -> None:
    storage = storage_for(cloudinary_standin)
    for item in variants():
        url = await storage.store(7, 1, item)
        assert url.startswith("https://")
        assert url.endswith(
            f"/recipes/7/v1/{item.name}.{'jpg' if item.format == 'jpeg' else 'webp'}"
        )
    assert cloudinary_standin.rejected == []
    uploaded = {u.public_id: u.data for u in cloudinary_standin.uploads}
    assert uploaded == {f"recipes/7/v1/{v.name}": v.data for v in variants()}


async def test_cloudinary_refuses_a_wrong_secret(cloudinary_standin: CloudinaryStandIn) -> None:
    storage = storage_for(cloudinary_standin, secret="not-the-secret")
    with pytest.raises(cloudinary.exceptions.AuthorizationRequired):
        await storage.store(7, 1, variants()[0])
    assert cloudinary_standin.rejected == ["Invalid Signature"]  # not retried
    assert cloudinary_standin.uploads == []


async def test_cloudinary_5xx_is_retried_with_backoff(
    cloudinary_standin: CloudinaryStandIn,
) -> None:
    cloudinary_standin.fail_next = [500, 503]
    url = await storage_for(cloudinary_standin).store(7, 1, variants()[0])
    assert url.endswith("/recipes/7/v1/resized.jpg")
    assert len(cloudinary_standin.rejected) == 2 and len(cloudinary_standin.uploads) == 1


async def test_cloudinary_gives_up_after_its_retries(
    cloudinary_standin: CloudinaryStandIn,
) -> None:
    cloudinary_standin.fail_next = [500, 500, 500, 500]
    with pytest.raises(cloudinary.exceptions.GeneralError):
        await storage_for(cloudinary_standin).store(7, 1, variants()[0])
    assert len(cloudinary_standin.rejected) == 3 and cloudinary_standin.fail_next == [500]


async def test_cloudinary_purge_deletes_by_version_prefix(
    cloudinary_standin: CloudinaryStandIn,
) -> None:
    storage = storage_for(cloudinary_standin)
    for version in (1, 2, 10):
        await storage.store(7, version, variants()[0])
    await storage.purge(7, [1])
    assert cloudinary_standin.deleted_prefixes == ["recipes/7/v1/"]
    assert sorted(cloudinary_standin.assets) == ["recipes/7/v10/resized", "recipes/7/v2/resized"]


def test_transient_errors_are_told_apart() -> None:
    errors = cloudinary.exceptions
    assert is_transient(errors.Error("Unexpected error - ReadTimeoutError()"))
    assert is_transient(errors.GeneralError("500"))
    assert is_transient(errors.RateLimited("429"))
    assert not is_transient(errors.BadRequest("invalid image"))
    assert not is_transient(errors.AuthorizationRequired("bad signature"))
