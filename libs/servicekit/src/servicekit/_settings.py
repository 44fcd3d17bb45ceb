"""Settings every service has; each service subclasses with its own ``env_prefix``.

Example: ``RECIPES_DATABASE_URL``, ``RECIPES_AMQP_URL``. Nothing else reads the environment.

Secrets can also come as files (Kubernetes mounts them so; values in environment variables
leak into crash dumps, ``/proc`` and child processes): a file named like the variable
(``RECIPES_IMAGE_URL_SECRET``) in ``SECRETS_DIR``, read by pydantic-settings; a variable set in
the environment wins. The URLs then carry no credentials: ``<PREFIX>DATABASE_PASSWORD``,
``<PREFIX>AMQP_USERNAME`` and ``<PREFIX>AMQP_PASSWORD`` are put into them.

A variable that starts with the service's prefix but names no setting (a typo such as
``RECIPES_PAGE_SIZE`` for ``RECIPES_DEFAULT_PAGE_SIZE``) is reported by a warning at start-up.

Reading a settings class loads neither the bus nor the database (aio-pika, SQLAlchemy): the
defaults come from ``servicekit.defaults`` and the retry policy from ``servicekit._retries``, so a
tool that only lists or checks settings starts quickly (a test guards it).
"""

import logging
import os
from pathlib import Path
from typing import Self
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)
from yarl import URL

from servicekit._retries import RetryPolicy
from servicekit.defaults import DEFAULT_AMQP_URL as DEFAULT_AMQP_URL  # re-exported
from servicekit.defaults import (
    DEFAULT_CONSUMER_BATCH_SIZE,
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_HEALTH_HOST,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_INBOX_RETENTION,
    DEFAULT_JWKS_URL,
    DEFAULT_LOG_LEVEL,
    DEFAULT_OUTBOX_POLL_INTERVAL,
    DEFAULT_POOL_SIZE,
    DEFAULT_PREFETCH,
    DEFAULT_RETRY_DELAYS,
    MIN_INBOX_RETENTION,
)
from servicekit.defaults import DEFAULT_JWT_AUDIENCE as DEFAULT_JWT_AUDIENCE  # re-exported
from servicekit.defaults import DEFAULT_JWT_ISSUER as DEFAULT_JWT_ISSUER  # re-exported

logger = logging.getLogger(__name__)

#: Where the deployment mounts the service's secrets, one file per variable (deploy/k8s).
SECRETS_DIR = Path("/run/secrets/app")


class PrefixedSettings(BaseSettings):
    """Reads secrets from ``SECRETS_DIR`` when it exists; warns about unknown variables."""

    model_config = SettingsConfigDict(secrets_dir=SECRETS_DIR)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # pydantic-settings warns about a missing secrets directory: outside a cluster (make up,
        # the tests) there is none, which is normal.
        secrets = file_secret_settings
        if isinstance(secrets, SecretsSettingsSource) and not any(
            d.is_dir() for d in _directories(secrets.secrets_dir)
        ):
            return init_settings, env_settings, dotenv_settings
        return init_settings, env_settings, dotenv_settings, secrets

    @model_validator(mode="after")
    def _report_unknown_variables(self) -> Self:
        unknown = unknown_variables(type(self), os.environ)
        if unknown:
            logger.warning(
                "ignoring environment variables that name no setting: %s", ", ".join(unknown)
            )
        return self


def unknown_variables(
    settings_class: type[BaseSettings], environ: dict[str, str] | os._Environ[str]
) -> list[str]:
    """Variables with the class's ``env_prefix`` that match none of its settings."""
    prefix = str(settings_class.model_config.get("env_prefix", "")).upper()
    if not prefix:
        return []
    known = {f"{prefix}{name}".upper() for name in settings_class.model_fields}
    return sorted(
        name for name in environ if name.upper().startswith(prefix) and name.upper() not in known
    )


def _directories(value: object) -> list[Path]:
    values = value if isinstance(value, list | tuple) else [value]
    return [Path(v) for v in values if isinstance(v, str | Path)]


def _with_password(database_url: str, password: str) -> str:
    """``database_url`` with ``password`` in it, quoted as SQLAlchemy renders a URL."""
    parts = urlsplit(database_url)
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    netloc = f"{user}:{quote(password, safe=' +')}@{hostinfo}"
    return urlunsplit(parts._replace(netloc=netloc))


class ServiceSettings(PrefixedSettings):
    """Broker, database, retries, health: the same knobs in every service."""

    database_url: str = Field(description="the service's own PostgreSQL database")
    database_pool_size: int = Field(
        default=DEFAULT_POOL_SIZE,
        ge=1,
        description="most PostgreSQL connections one process holds (README: connection budget)",
    )
    database_idle_timeout: float = Field(
        default=DEFAULT_IDLE_TIMEOUT,
        gt=0,
        description="seconds a pooled PostgreSQL connection may stay unused before it is closed",
    )
    database_password: SecretStr | None = Field(
        default=None, description="password put into the database URL (instead of writing it there)"
    )
    api_processes: int | None = Field(
        default=None,
        ge=1,
        description="processes of the service's API (services with one); unset: one per core",
    )
    amqp_url: str = Field(default=DEFAULT_AMQP_URL, description="RabbitMQ, vhost included")
    amqp_management_url: str | None = Field(
        default=None,
        description="RabbitMQ management API, where `migrate` sets the queue policies "
        "(default: port 15672 of the AMQP host, same user)",
    )
    amqp_username: str | None = Field(
        default=None, description="user put into the RabbitMQ URL (instead of writing it there)"
    )
    amqp_password: SecretStr | None = Field(
        default=None, description="password put into the RabbitMQ URL"
    )
    retry_delays: tuple[float, ...] = Field(
        default=DEFAULT_RETRY_DELAYS,
        min_length=1,
        description="seconds before each retry of a failed event (JSON list); then the DLQ; "
        "may change between deploys",
    )
    delivery_limit: int = Field(
        default=DEFAULT_DELIVERY_LIMIT,
        ge=1,
        description="deliveries without ack before the broker dead-letters "
        "(a policy `migrate` sets; may change between deploys)",
    )
    prefetch: int = Field(
        default=DEFAULT_PREFETCH, ge=1, description="events handled at once per consumer"
    )
    consumer_batch_size: int = Field(
        default=DEFAULT_CONSUMER_BATCH_SIZE,
        ge=1,
        description="most events a consumer commits in one transaction (1 for slow handlers)",
    )
    inbox_retention: float = Field(
        default=DEFAULT_INBOX_RETENTION,
        ge=MIN_INBOX_RETENTION,
        description="seconds an applied event's id is kept to recognise a redelivery (>= 1 day)",
    )
    outbox_poll_interval: float = Field(
        default=DEFAULT_OUTBOX_POLL_INTERVAL,
        gt=0,
        description="seconds between outbox polls (NOTIFY wakes it sooner)",
    )
    health_host: str = Field(
        default=DEFAULT_HEALTH_HOST, description="worker health/metrics address"
    )
    health_port: int = Field(description="worker health/metrics port")
    log_level: str = Field(default=DEFAULT_LOG_LEVEL, description="DEBUG, INFO, WARNING, ERROR")
    log_json: bool = Field(
        default=True, description="JSON log lines (make up sets false for people reading logs)"
    )

    @model_validator(mode="after")
    def _inbox_outlives_retries(self) -> Self:
        if self.inbox_retention <= sum(self.retry_delays):
            raise ValueError("inbox_retention must be longer than the sum of retry_delays")
        return self

    @model_validator(mode="after")
    def _credentials_into_urls(self) -> Self:
        if self.database_password is not None:
            secret = self.database_password.get_secret_value()
            self.database_url = _with_password(self.database_url, secret)
        if self.amqp_username is not None or self.amqp_password is not None:
            amqp = URL(self.amqp_url)
            password = self.amqp_password.get_secret_value() if self.amqp_password else None
            self.amqp_url = str(
                amqp.with_user(self.amqp_username or amqp.user).with_password(password)
            )
        return self

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(delays=self.retry_delays, delivery_limit=self.delivery_limit)


class TokenSettings(PrefixedSettings):
    """For services that verify access tokens against the auth service's JWK Set."""

    jwks_url: str = Field(default=DEFAULT_JWKS_URL, description="the auth service's JWK Set")
    jwt_issuer: str = Field(default=DEFAULT_JWT_ISSUER, description="expected `iss` of tokens")
    jwt_audience: str = Field(default=DEFAULT_JWT_AUDIENCE, description="expected `aud`")
