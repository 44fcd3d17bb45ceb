"""The auth service's settings: every knob comes from ``AUTH_*`` environment variables."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from servicekit import ServiceSettings
from servicekit.defaults import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER

SERVICE_NAME = "auth"


class Settings(ServiceSettings):
    # An empty variable means "not set": compose passes AUTH_SIGNING_KEY_PEM= in development,
    # where the key is generated (compose.yaml, deploy/compose/development.env).
    model_config = SettingsConfigDict(env_prefix="AUTH_", env_ignore_empty=True)

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/auth"
    health_port: int = 9001
    api_host: str = "127.0.0.1"
    api_port: int = 8001
    data_dir: Path = Path("var/auth")
    #: ``development`` generates a signing key under ``data_dir`` when none is configured;
    #: ``production`` refuses to start without one.
    environment: Literal["development", "production"] = "development"

    jwt_issuer: str = DEFAULT_JWT_ISSUER
    jwt_audience: str = DEFAULT_JWT_AUDIENCE
    access_token_lifetime: int = Field(default=15 * 60, ge=1, description="seconds")
    refresh_token_lifetime: int = Field(default=7 * 24 * 3600, ge=1, description="seconds")
    #: The Ed25519 private key that signs, as a PEM file or as PEM text (the text wins).
    signing_key_file: Path | None = None
    #: the Ed25519 private key as PEM text (wins over the file)
    signing_key_pem: SecretStr | None = None
    #: Public keys published beside the signing key: the next key before it signs, the previous
    #: one until its tokens expire (PEM files of public or private keys).
    extra_public_key_files: list[Path] = Field(default_factory=list)

    #: Argon2id cost; the defaults are OWASP's recommendation (19 MiB, 2 passes, 1 lane).
    argon2_memory_cost: int = Field(default=19 * 1024, ge=8, description="KiB")
    #: Argon2id iterations (OWASP: 2)
    argon2_time_cost: int = Field(default=2, ge=1)
    #: Argon2id lanes (OWASP: 1)
    argon2_parallelism: int = Field(default=1, ge=1)

    #: Failed sign-ins per window for one username from one client address before 429.
    login_failures_per_account_and_address: int = Field(default=10, ge=1)
    #: failed sign-ins per client address and window, whatever the usernames, before 429
    login_failures_per_address: int = Field(default=50, ge=1)
    #: Failed sign-ins per username and window from all addresses together; past it, only
    #: addresses that have failed themselves are refused (the owner elsewhere is not).
    login_failures_per_username: int = Field(default=20, ge=1)
    login_failure_window: int = Field(default=300, ge=1, description="seconds")
    #: Only behind the gateway, which sets X-Forwarded-For: otherwise clients could forge it.
    trust_forwarded_for: bool = False
