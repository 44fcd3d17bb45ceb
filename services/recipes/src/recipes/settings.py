"""Configuration of the recipes service, from ``RECIPES_*`` environment variables.

``image_url_secret`` signs the internal URLs the media service fetches originals from. It has a
default only when ``environment`` is ``development``: any other environment must set
``RECIPES_IMAGE_URL_SECRET`` or the service refuses to start.
"""

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from servicekit import ServiceSettings, TokenSettings

SERVICE_NAME = "recipes"
DEV_IMAGE_URL_SECRET = "recipes-dev-only-image-url-secret"


class Settings(ServiceSettings, TokenSettings):
    model_config = SettingsConfigDict(env_prefix="RECIPES_")

    environment: str = "development"
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/recipes"
    health_port: int = 9002
    api_host: str = "127.0.0.1"
    api_port: int = 8002
    data_dir: str = "var/recipes"
    #: Where the media service reaches this API (the signed image URLs start with it).
    internal_base_url: str = "http://127.0.0.1:8002"
    #: HMAC key of the signed internal image URLs (required outside development)
    image_url_secret: SecretStr | None = None
    #: how long a signed original-image URL stays valid
    image_url_ttl_seconds: int = Field(default=86_400, gt=0)
    #: Shared with the media worker (``MEDIA_RECIPES_CREDENTIAL``): a request carrying it may use
    #: an expired image link, so a dead letter replayed days later still gets its original.
    media_credential: SecretStr | None = None
    #: largest accepted image upload (413 above)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    #: recipes per page without ?page_size=
    default_page_size: int = Field(default=10, ge=1)
    #: largest ?page_size= honoured
    max_page_size: int = Field(default=100, ge=1)
    #: ``m`` of the Bayesian ("popular") ordering: votes a recipe needs to count fully.
    popular_min_votes: int = Field(default=5, ge=1)
    #: Seconds a client or the gateway's cache may reuse a public read before revalidating it:
    #: how stale an anonymous read can be (0: nothing is cached).
    cache_max_age: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _secret_outside_development(self) -> Self:
        if self.image_url_secret is None:
            if self.environment != "development":
                raise ValueError("RECIPES_IMAGE_URL_SECRET is required outside development")
            self.image_url_secret = SecretStr(DEV_IMAGE_URL_SECRET)
        return self

    @property
    def signing_key(self) -> bytes:
        assert self.image_url_secret is not None  # set by the validator
        return self.image_url_secret.get_secret_value().encode()
