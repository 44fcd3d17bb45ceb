"""Configuration of the media worker, from ``MEDIA_*`` environment variables.

``storage`` is ``local`` by default (files under ``data_dir``, served by the gateway at
``/media/``). ``cloudinary`` needs ``cloudinary_cloud_name``, ``cloudinary_api_key`` and
``cloudinary_api_secret``; the worker refuses to start without them.
"""

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from servicekit import ServiceSettings

SERVICE_NAME = "media"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MEDIA_")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/media"
    health_port: int = 9004
    #: Images in flight at once; the CPU work queues for ``workers`` processes anyway.
    prefetch: int = Field(default=4, ge=1)
    #: Each image in flight holds its handler's connection and briefly takes a second one,
    #: and the relay and the inbox pruning take one each: at least 2 x prefetch + 2.
    database_pool_size: int = Field(default=10, ge=1)
    #: One image per transaction: a batch would render its images one after another.
    consumer_batch_size: int = Field(default=1, ge=1)
    data_dir: str = "var/media"

    #: The only origin originals are fetched from, whatever URL a message carries.
    recipes_internal_url: str = "http://127.0.0.1:8002"
    #: Shared with the recipes service (``RECIPES_MEDIA_CREDENTIAL``): with it an expired image
    #: link still works, so a message replayed days later gets its original. Without it a
    #: link past its expiry fails the image.
    recipes_credential: SecretStr | None = None
    #: seconds for fetching an original from the recipes service
    fetch_timeout: float = Field(default=10.0, gt=0)
    #: Upper bound on a whole download, so a slow drip cannot hold a job forever.
    fetch_deadline: float = Field(default=60.0, gt=0)
    #: largest original accepted
    max_image_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    #: largest image accepted, read from the header before decoding
    max_megapixels: float = Field(default=40.0, gt=0)
    #: Processes decoding and encoding images.
    workers: int = Field(default=2, ge=1)
    #: Longest a render may take (a 40 MP photo takes a few seconds); then the processes die.
    render_timeout: float = Field(default=120.0, gt=0)

    #: `local` (files under the data dir, served at /media/) or `cloudinary`
    storage: Literal["local", "cloudinary"] = "local"
    #: URL prefix of locally stored images (the gateway's /media/)
    public_base_url: str = "http://127.0.0.1:8080/media/"
    #: Cloudinary cloud (storage=cloudinary)
    cloudinary_cloud_name: str | None = None
    #: Cloudinary API key
    cloudinary_api_key: str | None = None
    #: Cloudinary API secret (signs uploads)
    cloudinary_api_secret: SecretStr | None = None
    #: Base URL of the Cloudinary API (a stand-in server in tests); None means Cloudinary's own.
    cloudinary_upload_prefix: str | None = None
    #: seconds for each Cloudinary call
    cloudinary_timeout: float = Field(default=30.0, gt=0)
    #: Pauses between attempts of one Cloudinary call that timed out or met a 5xx.
    cloudinary_retry_delays: tuple[float, ...] = (0.5, 2.0, 5.0)

    @model_validator(mode="after")
    def _cloudinary_configured(self) -> Self:
        if self.storage == "cloudinary" and not (
            self.cloudinary_cloud_name and self.cloudinary_api_key and self.cloudinary_api_secret
        ):
            raise ValueError(
                "MEDIA_STORAGE=cloudinary needs MEDIA_CLOUDINARY_CLOUD_NAME, "
                "MEDIA_CLOUDINARY_API_KEY and MEDIA_CLOUDINARY_API_SECRET"
            )
        return self

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)
