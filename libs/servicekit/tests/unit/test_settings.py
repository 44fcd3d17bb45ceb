"""Settings from files (secrets mounted by Kubernetes) and the warning about unknown variables."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_settings import SettingsConfigDict

from servicekit._settings import ServiceSettings, unknown_variables


class KitSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KIT_")

    database_url: str = "postgresql+psycopg://kit@db-pooler-rw:5432/kit"
    amqp_url: str = "amqp://rabbitmq:5672/"
    health_port: int = 9999


def test_secrets_come_from_files_named_like_the_variables(tmp_path: Path) -> None:
    (tmp_path / "KIT_DATABASE_PASSWORD").write_text("s3cret/with:odd@chars\n")
    (tmp_path / "KIT_AMQP_USERNAME").write_text("default_user_x7\n")
    (tmp_path / "KIT_AMQP_PASSWORD").write_text("p@ss word\n")

    settings = KitSettings(_secrets_dir=tmp_path)

    assert settings.database_url == (
        "postgresql+psycopg://kit:s3cret%2Fwith%3Aodd%40chars@db-pooler-rw:5432/kit"
    )
    assert settings.amqp_url == "amqp://default_user_x7:p%40ss%20word@rabbitmq:5672/"


def test_a_variable_wins_over_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "KIT_DATABASE_PASSWORD").write_text("from-file")
    monkeypatch.setenv("KIT_DATABASE_PASSWORD", "from-env")

    settings = KitSettings(_secrets_dir=tmp_path)

    assert settings.database_url == "postgresql+psycopg://kit:from-env@db-pooler-rw:5432/kit"


def test_urls_are_untouched_without_credentials_settings() -> None:
    settings = KitSettings()

    assert settings.database_url == "postgresql+psycopg://kit@db-pooler-rw:5432/kit"
    assert settings.amqp_url == "amqp://rabbitmq:5672/"


def test_a_mistyped_variable_is_reported_at_start_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KIT_PAGE_SIZE", "20")
    monkeypatch.setenv("KIT_PREFETCH", "8")

    with caplog.at_level(logging.WARNING, logger="servicekit._settings"):
        settings = KitSettings()

    assert settings.prefetch == 8
    (record,) = caplog.records
    assert record.getMessage() == (
        "ignoring environment variables that name no setting: KIT_PAGE_SIZE"
    )


def test_unknown_variables_are_matched_without_regard_to_case() -> None:
    environ = {"kit_prefetch": "1", "KIT_Log_Level": "INFO", "KIT_TYPO": "x", "OTHER_X": "y"}

    assert unknown_variables(KitSettings, environ) == ["KIT_TYPO"]


def test_reading_the_settings_loads_neither_the_bus_nor_the_database() -> None:
    """A tool that lists or checks settings must not pay for aio-pika and SQLAlchemy (issue 19)."""
    heavy = ("aio_pika", "sqlalchemy", "sqlmodel")
    code = (
        "import sys\n"
        "import servicekit._settings\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == ""
