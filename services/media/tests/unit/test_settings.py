import pytest
from pydantic import ValidationError

from media.settings import Settings


def test_defaults_work_on_a_development_machine() -> None:
    settings = Settings()
    assert (settings.storage, settings.data_dir, settings.health_port) == (
        "local",
        "var/media",
        9004,
    )
    assert settings.max_pixels == 40_000_000
    assert settings.max_image_bytes == 10 * 1024 * 1024


def test_cloudinary_storage_needs_its_credentials() -> None:
    with pytest.raises(ValidationError, match="MEDIA_CLOUDINARY_API_SECRET"):
        Settings(storage="cloudinary", cloudinary_cloud_name="demo", cloudinary_api_key="k")
    configured = Settings(
        storage="cloudinary",
        cloudinary_cloud_name="demo",
        cloudinary_api_key="k",
        cloudinary_api_secret="very-secret-value",
    )
    assert configured.cloudinary_api_secret is not None
    assert "very-secret-value" not in repr(configured)
