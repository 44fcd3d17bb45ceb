"""The media worker's processes: ``media worker`` and ``media migrate``."""

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

import httpx

from media.db import SessionMaker, create_engine, create_session_maker
from media.fetch import OriginalFetcher
from media.handlers import register_handlers
from media.renderer import Renderer
from media.service import ImagePipeline
from media.settings import QUEUE_NAME, SERVICE_NAME, Settings
from media.storage import CloudinaryStorage, LocalStorage, Storage
from servicekit.consumer import Consumer
from servicekit.health import Readiness
from servicekit.migrations import ensure_database, upgrade_database
from servicekit.runtime import Messaging, configure_observability, declare_queues, run_worker

SERVICE_DIR = Path(__file__).resolve().parents[2]


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


def build_consumer(
    settings: Settings, session_maker: SessionMaker, pipeline: ImagePipeline
) -> Consumer:
    consumer = Consumer(
        queue=QUEUE_NAME,
        producer=SERVICE_NAME,
        session_maker=session_maker,
        retry_policy=settings.retry_policy,
        prefetch=settings.prefetch,
        batch_size=settings.consumer_batch_size,
    )
    register_handlers(consumer, pipeline)
    return consumer


async def run(settings: Settings) -> None:
    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        idle_timeout=settings.database_idle_timeout,
    )
    session_maker = create_session_maker(engine)
    pipeline = build_pipeline(settings, session_maker)
    consumer = build_consumer(settings, session_maker, pipeline)
    messaging = Messaging(
        amqp_url=settings.amqp_url,
        database_url=settings.database_url,
        session_maker=session_maker,
        consumers=[consumer],
        poll_interval=settings.outbox_poll_interval,
        inbox_retention=settings.inbox_retention,
    )
    readiness = Readiness(engine=engine, bus=messaging.bus, consumers=[consumer])
    try:
        await pipeline.renderer.start()
        await run_worker(messaging, readiness, host=settings.health_host, port=settings.health_port)
    finally:
        pipeline.renderer.close()
        await pipeline.fetcher.aclose()
        await engine.dispose()


async def declare_worker_queue(settings: Settings) -> None:
    """Declare ``media.events`` with the consumer the worker builds (bindings, retries, DLQ)."""
    # Declaring needs no database: this engine is never connected.
    session_maker = create_session_maker(create_engine(settings.database_url))
    pipeline = build_pipeline(settings, session_maker)
    try:
        consumer = build_consumer(settings, session_maker, pipeline)
        await declare_queues(
            settings.amqp_url, [consumer], management_url=settings.amqp_management_url
        )
    finally:
        pipeline.renderer.close()
        await pipeline.fetcher.aclose()


def migrate(settings: Settings) -> None:
    """Create and upgrade the database, then declare the worker's queue and its bindings.

    Not left to the worker alone: the exchange drops an event no queue is bound for yet, so a
    ``recipe.created`` published before the worker's first start would never get its images.
    """
    ensure_database(settings.database_url)
    upgrade_database(SERVICE_DIR, settings.database_url)
    asyncio.run(declare_worker_queue(settings))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="media", description=__doc__)
    parser.add_argument("command", choices=["worker", "migrate"])
    args = parser.parse_args(argv)
    settings = Settings()
    configure_observability(SERVICE_NAME, log_level=settings.log_level, json_logs=settings.log_json)
    if args.command == "migrate":
        migrate(settings)
    else:
        asyncio.run(run(settings))


if __name__ == "__main__":
    main()
