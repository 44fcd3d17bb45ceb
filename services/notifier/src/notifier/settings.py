"""Configuration of the notifier service, from ``NOTIFIER_*`` environment variables.

``unsubscribe_secret`` signs the one-click unsubscribe tokens. It has a default only when
``environment`` is ``development``: elsewhere ``NOTIFIER_UNSUBSCRIBE_SECRET`` must be set or the
service refuses to start. Without ``smtp_host`` mail is written as ``.eml`` files under
``<data_dir>/mail`` instead of being sent.
"""

from datetime import timedelta
from pathlib import Path
from typing import Self

from croniter import croniter
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from notifier.zones import is_known_zone
from servicekit import ServiceSettings, TokenSettings

SERVICE_NAME = "notifier"
#: The tick job this service emits and answers; the backup service's ticks share the routing key.
DIGEST_SCAN_JOB = "digest-scan"
DEV_UNSUBSCRIBE_SECRET = "notifier-dev-only-unsubscribe-secret"


class Settings(ServiceSettings, TokenSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_")

    environment: str = "development"
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/notifier"
    health_port: int = 9003
    api_host: str = "127.0.0.1"
    api_port: int = 8003
    data_dir: Path = Path("var/notifier")
    #: Where users reach the platform (the gateway): unsubscribe links start with it.
    public_base_url: str = "http://127.0.0.1:8080"
    #: key of the signed unsubscribe tokens (required outside development)
    unsubscribe_secret: SecretStr | None = None

    #: When the digest goes out, in each user's local time zone.
    digest_cron: str = "0 6 * * 1-5"
    #: The zone of users who did not choose one.
    default_timezone: str = "UTC"
    #: How often the worker looks for digest slots that have come (UTC).
    scan_cron: str = "*/15 * * * *"
    #: How late a digest slot is still sent after downtime.
    catch_up_grace: timedelta = timedelta(hours=2)
    #: No email when a digest has nothing new to say.
    skip_empty: bool = True
    #: Window of the first digest of a user who never had one.
    first_digest_lookback: timedelta = timedelta(days=7)
    #: How many best-rated and new recipes a digest lists at most.
    digest_list_limit: int = Field(default=10, ge=1)

    #: SMTP server; empty: write .eml files under the data dir
    smtp_host: str = ""
    #: SMTP port
    smtp_port: int = 25
    #: SMTP login (empty: none)
    smtp_username: str = ""
    #: SMTP password
    smtp_password: SecretStr = SecretStr("")
    #: implicit TLS (port 465)
    smtp_use_tls: bool = False
    #: STARTTLS: empty uses it whenever the server offers it, true requires it, false never
    smtp_start_tls: bool | None = None
    #: CA certificates (PEM file) the SMTP server's certificate is checked against (empty: the
    #: system's)
    smtp_cert_bundle: str | None = None
    #: seconds for each SMTP operation
    smtp_timeout: float = Field(default=30.0, gt=0)
    #: SMTP connections kept open and used in parallel.
    smtp_connections: int = Field(default=4, ge=1)
    #: Deliveries claimed, sent and recorded together: one transaction each way per batch. A
    #: dispatcher that dies mid-batch leaves at most this many mails of unknown outcome; a
    #: batch must go out well within ``sending_timeout``.
    dispatch_batch: int = Field(default=100, ge=1)
    #: Batches in flight at once: while one is claimed or recorded, another keeps the SMTP
    #: connections busy.
    dispatch_concurrency: int = Field(default=2, ge=1)
    #: Mails per second at most (0: no limit).
    max_per_second: float = Field(default=50.0, ge=0)
    #: the From header of every mail
    mail_from: str = "Recipe Platform <no-reply@recipes.localhost>"
    #: Attempts of a mail after temporary failures (4xx, connection errors).
    send_attempts: int = Field(default=5, ge=1)
    #: Wait before the next attempt, multiplied by the attempt number.
    send_retry_delay: timedelta = timedelta(minutes=1)
    #: How long a mail may stay "sending" before its worker is presumed dead.
    sending_timeout: timedelta = timedelta(minutes=10)
    #: Resend mails whose worker died mid-send (at-least-once) instead of giving up on them.
    resend_interrupted: bool = False
    #: Seconds between looks for pending mail when there is none.
    dispatch_interval: float = Field(default=2.0, gt=0)

    @field_validator("digest_cron", "scan_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"invalid cron expression: {value!r}")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        if not is_known_zone(value):
            raise ValueError(f"unknown time zone: {value!r}")
        return value

    @model_validator(mode="after")
    def _secret_outside_development(self) -> Self:
        if self.unsubscribe_secret is None:
            if self.environment != "development":
                raise ValueError("NOTIFIER_UNSUBSCRIBE_SECRET is required outside development")
            self.unsubscribe_secret = SecretStr(DEV_UNSUBSCRIBE_SECRET)
        return self

    @model_validator(mode="after")
    def _no_cleartext_credentials(self) -> Self:
        if self.smtp_username and self.smtp_start_tls is False and not self.smtp_use_tls:
            raise ValueError(
                "SMTP credentials need TLS: unset NOTIFIER_SMTP_START_TLS or set"
                " NOTIFIER_SMTP_USE_TLS"
            )
        return self

    @property
    def unsubscribe_key(self) -> str:
        assert self.unsubscribe_secret is not None  # set by the validator
        return self.unsubscribe_secret.get_secret_value()

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"
