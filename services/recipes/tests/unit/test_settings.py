import pytest
from pydantic import ValidationError

from recipes.settings import DEV_IMAGE_URL_SECRET, Settings


def test_defaults_work_on_a_developer_machine() -> None:
    settings = Settings()
    assert settings.max_upload_bytes == 10 * 1024 * 1024
    assert settings.internal_base_url == "http://127.0.0.1:8002"
    assert settings.image_url_ttl_seconds == 86_400
    assert settings.signing_key == DEV_IMAGE_URL_SECRET.encode()


def test_image_url_secret_is_required_outside_development() -> None:
    with pytest.raises(ValidationError, match="IMAGE_URL_SECRET"):
        Settings(environment="production")
    settings = Settings(environment="production", image_url_secret="s3cret")
    assert settings.signing_key == b"s3cret"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECIPES_POPULAR_MIN_VOTES", "12")
    assert Settings().popular_min_votes == 12
