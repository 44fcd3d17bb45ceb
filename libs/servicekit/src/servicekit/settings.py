"""Settings every service has; each service subclasses with its own ``env_prefix``.

Example: ``RECIPES_DATABASE_URL``, ``RECIPES_AMQP_URL``. Nothing else reads the environment.
"""

from pydantic import Field
from pydantic_settings import BaseSettings

from servicekit.bus import RetryPolicy

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: Who signs access tokens and for whom (the auth service and every verifier agree on these).
DEFAULT_JWT_ISSUER = "recipe-platform-auth"
DEFAULT_JWT_AUDIENCE = "recipe-platform"
DEFAULT_JWKS_URL = "http://127.0.0.1:8001/api/auth/.well-known/jwks.json"


class ServiceSettings(BaseSettings):
    """Broker, database, retries, health: the same knobs in every service."""

    database_url: str
    amqp_url: str = DEFAULT_AMQP_URL
    retry_delays: tuple[float, ...] = Field(default=(1.0, 5.0, 30.0, 120.0), min_length=1)
    delivery_limit: int = Field(default=20, ge=1)
    prefetch: int = Field(default=32, ge=1)
    outbox_poll_interval: float = Field(default=1.0, gt=0)
    health_host: str = "127.0.0.1"
    health_port: int
    log_level: str = "INFO"
    #: JSON lines for log shippers; ``make up`` turns it off for people reading ``make logs``.
    log_json: bool = True

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(delays=self.retry_delays, delivery_limit=self.delivery_limit)


class TokenSettings(BaseSettings):
    """For services that verify access tokens against the auth service's JWK Set."""

    jwks_url: str = DEFAULT_JWKS_URL
    jwt_issuer: str = DEFAULT_JWT_ISSUER
    jwt_audience: str = DEFAULT_JWT_AUDIENCE
