import pytest
from pydantic import ValidationError

from notifier.settings import Settings


def test_a_secret_is_required_outside_development() -> None:
    with pytest.raises(ValidationError, match="UNSUBSCRIBE_SECRET"):
        Settings(environment="production")


@pytest.mark.parametrize(
    "field", [{"digest_cron": "every morning"}, {"default_timezone": "Mars/Base"}]
)
def test_schedule_settings_are_validated(field: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings(**field)  # type: ignore[arg-type]


def test_development_defaults_write_mail_to_files() -> None:
    settings = Settings()
    assert settings.smtp_host == ""
    assert str(settings.mail_dir) == "var/notifier/mail"
