"""What the media worker opens: the image pipeline (fetcher, renderer, storage)."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from media.db import SessionMaker
from media.fetch import OriginalFetcher
from media.renderer import Renderer
from media.service import ImagePipeline
from media.settings import Settings
from media.storage import CloudinaryStorage, LocalStorage, Storage


def build_storage(settings: Settings) -> Storage:
    if settings.storage == "cloudinary":
        assert settings.cloudinary_cloud_name and settings.cloudinary_api_key
        assert settings.cloudinary_api_secret is not None  # checked by Settings
        return CloudinaryStorage(
            cloud_name=settings.cloudinary_cloud_name,
            api_key=settings.cloudinary_api_key,
            api_secret=settings.cloudinary_api_secret.get_secret_value(),
            upload_prefix=settings.cloudinary_upload_prefix,
            timeout=settings.cloudinary_timeout,
            retry_delays=settings.cloudinary_retry_delays,
        )
    return LocalStorage(Path(settings.data_dir), settings.public_base_url)


def build_pipeline(
    settings: Settings,
    session_maker: SessionMaker,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ImagePipeline:
    """The pipeline as configured; ``transport`` replaces the network for tests."""
    return ImagePipeline(
        session_maker=session_maker,
        fetcher=OriginalFetcher(
            allowed_origin=settings.recipes_internal_url,
            max_bytes=settings.max_image_bytes,
            timeout=settings.fetch_timeout,
            deadline=settings.fetch_deadline,
            credential=(
                settings.recipes_credential.get_secret_value()
                if settings.recipes_credential
                else None
            ),
            transport=transport,
        ),
        renderer=Renderer(
            workers=settings.workers,
            max_pixels=settings.max_pixels,
            timeout=settings.render_timeout,
        ),
        storage=build_storage(settings),
    )


@asynccontextmanager
async def open_pipeline(
    settings: Settings, session_maker: SessionMaker
) -> AsyncIterator[Sequence[object]]:
    """The worker's resources: the pipeline, its render processes started."""
    pipeline = build_pipeline(settings, session_maker)
    try:
        await pipeline.renderer.start()
        yield [pipeline]
    finally:
        pipeline.renderer.close()
        await pipeline.fetcher.aclose()
