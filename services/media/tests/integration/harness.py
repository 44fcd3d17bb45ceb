"""A media worker wired as ``media worker`` wires it, against the test broker and database."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from sqlalchemy import func, select
from sqlmodel import col

from contracts import (
    EXCHANGE_NAME,
    Envelope,
    Event,
    ImageReference,
    RecipeCreated,
    RecipeImageFailed,
    RecipeImageReady,
    make_envelope,
)
from media.db import SessionMaker
from media.main import service
from media.models import ImageJob
from media.service import ImagePipeline
from media.settings import Settings
from media.worker import build_pipeline
from servicekit import Bus, Messaging, OutboxMessage
from servicekit.testing import eventually

from ..originals import RECIPES_URL, OriginalsServer


def recipe_created(recipe_id: int, image: ImageReference | None) -> RecipeCreated:
    now = datetime.now(UTC)
    return RecipeCreated(
        recipe_id=recipe_id,
        seller_id=1,
        seller_username="chef",
        title=f"Recipe {recipe_id}",
        created_at=now,
        updated_at=now,
        image=image,
    )


def worker_settings(database_url: str, amqp_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "amqp_url": amqp_url,
        "recipes_internal_url": RECIPES_URL,
        "retry_delays": (0.05, 0.1),
        "outbox_poll_interval": 0.1,
        "workers": 2,
        "cloudinary_retry_delays": (0.01,),
    }
    return Settings(**(values | overrides))


@dataclass
class MediaWorker:
    settings: Settings
    session_maker: SessionMaker
    originals: OriginalsServer = field(default_factory=OriginalsServer)
    results: list[Envelope] = field(default_factory=list)
    pipeline: ImagePipeline | None = None
    _messaging: Messaging | None = None
    _publisher: Bus | None = None
    _collector: AbstractConnection | None = None

    async def start(self) -> "MediaWorker":
        await self._collect_results()
        self.pipeline = build_pipeline(
            self.settings, self.session_maker, transport=self.originals.transport
        )
        consumer = service.consumer(self.settings, self.session_maker, [self.pipeline])
        self._messaging = Messaging(
            amqp_url=self.settings.amqp_url,
            database_url=self.settings.database_url,
            session_maker=self.session_maker,
            consumers=[consumer],
            poll_interval=0.1,
        )
        await self._messaging.start()

        async def attached() -> bool:
            return consumer.is_attached

        await eventually(attached)
        self._publisher = Bus(self.settings.amqp_url)
        await self._publisher.connect()
        return self

    async def stop(self) -> None:
        if self._messaging is not None:
            await self._messaging.stop()
        if self.pipeline is not None:
            self.pipeline.renderer.close()
            await self.pipeline.fetcher.aclose()
        for closable in (self._publisher, self._collector):
            if closable is not None:
                await closable.close()

    async def _collect_results(self) -> None:
        self._collector = await aio_pika.connect(self.settings.amqp_url)
        channel = await self._collector.channel()
        exchange = await channel.declare_exchange(
            EXCHANGE_NAME, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue("test.image-results", durable=True)
        for key in (RecipeImageReady.event_type, RecipeImageFailed.event_type):
            await queue.bind(exchange, key)

        async def collect(message: AbstractIncomingMessage) -> None:
            self.results.append(Envelope.model_validate_json(message.body))
            await message.ack()

        await queue.consume(collect)

    async def send(self, *events: Event | Envelope) -> list[Envelope]:
        assert self._publisher is not None
        envelopes = [
            e if isinstance(e, Envelope) else make_envelope(e, producer="recipes") for e in events
        ]
        await self._publisher.publish_many([(envelope, {}) for envelope in envelopes])
        return envelopes

    def results_for(self, recipe_id: int) -> list[Envelope]:
        return [e for e in self.results if e.payload["recipe_id"] == recipe_id]

    async def wait_for_results(self, count: int, *, within: float = 60.0) -> None:
        async def arrived() -> bool:
            return len(self.results) >= count

        await eventually(arrived, within=within)

    async def job(self, recipe_id: int, image_version: int) -> ImageJob:
        async with self.session_maker() as session:
            job = await session.scalar(
                select(ImageJob).where(
                    ImageJob.recipe_id == recipe_id,  # type: ignore[arg-type]
                    ImageJob.image_version == image_version,  # type: ignore[arg-type]
                )
            )
        assert isinstance(job, ImageJob)
        return job

    async def job_status(self, recipe_id: int, image_version: int) -> str | None:
        """The committed status of a job, None before it exists."""
        async with self.session_maker() as session:
            status = await session.scalar(
                select(col(ImageJob.status)).where(
                    col(ImageJob.recipe_id) == recipe_id,
                    col(ImageJob.image_version) == image_version,
                )
            )
        return None if status is None else str(status)

    async def outbox_size(self) -> int:
        async with self.session_maker() as session:
            count = await session.scalar(select(func.count()).select_from(OutboxMessage))
        return int(count or 0)
