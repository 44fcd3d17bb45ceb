"""Settings every service has; each service subclasses with its own ``env_prefix``.

Example: ``RECIPES_DATABASE_URL``, ``RECIPES_AMQP_URL``. Nothing else reads the environment.
"""

from pydantic import Field
from pydantic_settings import BaseSettings

from servicekit.bus import RetryPolicy
from servicekit.db import DEFAULT_POOL_SIZE

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: Who signs access tokens and for whom (the auth service and every verifier agree on these).
DEFAULT_JWT_ISSUER = "recipe-platform-auth"
DEFAULT_JWT_AUDIENCE = "recipe-platform"
DEFAULT_JWKS_URL = "http://127.0.0.1:8001/api/auth/.well-known/jwks.json"


class ServiceSettings(BaseSettings):
    """Broker, database, retries, health: the same knobs in every service."""

    database_url: str = Field(description="the service's own PostgreSQL database")
    database_pool_size: int = Field(
        default=DEFAULT_POOL_SIZE,
        ge=1,
        description="most PostgreSQL connections one process holds (all kept open once opened)",
    )
    api_processes: int | None = Field(
        default=None,
        ge=1,
        description="processes of the service's API (services with one); unset: one per core",
    )
    amqp_url: str = Field(default=DEFAULT_AMQP_URL, description="RabbitMQ, vhost included")
    retry_delays: tuple[float, ...] = Field(
        default=(1.0, 5.0, 30.0, 120.0),
        min_length=1,
        description="seconds before each retry of a failed event (JSON list); then the DLQ",
    )
    delivery_limit: int = Field(
        default=20, ge=1, description="deliveries without ack before the broker dead-letters"
    )
    prefetch: int = Field(default=32, ge=1, description="events handled at once per consumer")
    consumer_batch_size: int = Field(
        default=16,
        ge=1,
        description="most events a consumer commits in one transaction (1 for slow handlers)",
    )
    outbox_poll_interval: float = Field(
        default=1.0, gt=0, description="seconds between outbox polls (NOTIFY wakes it sooner)"
    )
    health_host: str = Field(default="127.0.0.1", description="worker health/metrics address")
    health_port: int = Field(description="worker health/metrics port")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING, ERROR")
    log_json: bool = Field(
        default=True, description="JSON log lines (make up sets false for people reading logs)"
    )

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(delays=self.retry_delays, delivery_limit=self.delivery_limit)


class TokenSettings(BaseSettings):
    """For services that verify access tokens against the auth service's JWK Set."""

    jwks_url: str = Field(default=DEFAULT_JWKS_URL, description="the auth service's JWK Set")
    jwt_issuer: str = Field(default=DEFAULT_JWT_ISSUER, description="expected `iss` of tokens")
    jwt_audience: str = Field(default=DEFAULT_JWT_AUDIENCE, description="expected `aud`")
