"""The image job: claim, fetch, render, store, publish; and purging a recipe's assets.

Each (recipe, image version) is processed once. The handler's transaction first takes a
per-recipe advisory lock, so two deliveries of the same image (or two versions of one recipe)
never run side by side. The attempt is counted in a transaction of its own (``media.attempts``),
so failed attempts stay counted after the handler's transaction rolls back. The outcome (job
row, purge of replaced versions, ``recipe.image_ready`` or ``recipe.image_failed`` in the
outbox) commits in the handler's transaction, which nothing here commits; a duplicate event then
finds the job finished and does nothing.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts import Event, ImageReference, ImageVariant, RecipeImageFailed, RecipeImageReady
from media import attempts
from media.db import SessionMaker
from media.errors import ImageRejected
from media.fetch import OriginalFetcher
from media.imaging import RESIZED_VARIANT, RenderedImage
from media.metrics import IMAGE_JOBS, PROCESSING_SECONDS
from media.models import ImageJob, JobStatus
from media.renderer import Renderer
from media.storage import Storage

logger = logging.getLogger(__name__)

Publish = Callable[[Event], Awaitable[Any]]


async def lock_recipe(*, session: AsyncSession, recipe_id: int) -> None:
    """Serialise the media work of one recipe until this transaction ends."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended('media.recipe:' || :id, 0))"),
        {"id": str(recipe_id)},
    )


@dataclass
class ImagePipeline:
    #: For the attempt counter, outside the handler's transaction.
    session_maker: SessionMaker
    fetcher: OriginalFetcher
    renderer: Renderer
    storage: Storage

    async def process_image(
        self,
        *,
        session: AsyncSession,
        publish: Publish,
        recipe_id: int,
        reference: ImageReference,
    ) -> str:
        """Process one image version of a recipe once; returns the outcome."""
        await lock_recipe(session=session, recipe_id=recipe_id)
        version = reference.image_version
        if not await attempts.start(self.session_maker, recipe_id, version):
            outcome = "duplicate"
        elif await _newer_version_ready(session, recipe_id, version):
            await _finish(session, recipe_id, version, JobStatus.SUPERSEDED)
            outcome = "superseded"
        else:
            started = time.perf_counter()
            outcome = await self._run(session, publish, recipe_id, reference)
            PROCESSING_SECONDS.observe(time.perf_counter() - started)
        IMAGE_JOBS.labels(outcome).inc()
        return outcome

    async def _run(
        self, session: AsyncSession, publish: Publish, recipe_id: int, reference: ImageReference
    ) -> str:
        version = reference.image_version
        try:
            rendered = await self.renderer.render(await self.fetcher.fetch(reference))
            variants = await self._store(recipe_id, version, rendered)
            replaced = await _versions(session, recipe_id, {JobStatus.READY}, below=version)
            await self.storage.purge(recipe_id, replaced)
        except ImageRejected as exc:
            logger.warning("image %s v%s rejected: %s", recipe_id, version, exc)
            await _finish(session, recipe_id, version, JobStatus.FAILED, error=str(exc))
            await publish(
                RecipeImageFailed(recipe_id=recipe_id, image_version=version, reason=exc.reason)
            )
            return "failed"
        except Exception as exc:
            IMAGE_JOBS.labels("error").inc()
            await attempts.record_error(self.session_maker, recipe_id, version, repr(exc))
            raise
        await _mark(session, recipe_id, replaced, JobStatus.PURGED)
        ready = RecipeImageReady(
            recipe_id=recipe_id,
            image_version=version,
            resized_image_url=next(v.url for v in variants if v.name == RESIZED_VARIANT),
            variants=tuple(variants),
        )
        result = ready.model_dump(mode="json", include={"resized_image_url", "variants"})
        await _finish(session, recipe_id, version, JobStatus.READY, result=result)
        await publish(ready)
        return "ready"

    async def _store(
        self, recipe_id: int, version: int, rendered: RenderedImage
    ) -> list[ImageVariant]:
        urls = await asyncio.gather(
            *(self.storage.store(recipe_id, version, variant) for variant in rendered.variants)
        )
        return [
            ImageVariant(
                name=variant.name,
                url=url,
                width=variant.width,
                height=variant.height,
                format=variant.format,
                bytes=len(variant.data),
            )
            for variant, url in zip(rendered.variants, urls, strict=True)
        ]

    async def purge_recipe(self, *, session: AsyncSession, recipe_id: int) -> list[int]:
        """Delete every stored asset of a deleted recipe; returns the purged versions."""
        await lock_recipe(session=session, recipe_id=recipe_id)
        stored = await _versions(session, recipe_id, {JobStatus.READY, JobStatus.PROCESSING})
        await self.storage.purge(recipe_id, stored)
        await _mark(session, recipe_id, stored, JobStatus.PURGED)
        return stored


async def _newer_version_ready(session: AsyncSession, recipe_id: int, version: int) -> bool:
    newer = await session.scalar(
        select(func.count())
        .select_from(ImageJob)
        .where(
            col(ImageJob.recipe_id) == recipe_id,
            col(ImageJob.image_version) > version,
            col(ImageJob.status) == JobStatus.READY,
        )
    )
    return bool(newer)


async def _versions(
    session: AsyncSession, recipe_id: int, statuses: set[JobStatus], *, below: int | None = None
) -> list[int]:
    query = select(col(ImageJob.image_version)).where(
        col(ImageJob.recipe_id) == recipe_id, col(ImageJob.status).in_(list(statuses))
    )
    if below is not None:
        query = query.where(col(ImageJob.image_version) < below)
    return list(await session.scalars(query.order_by(col(ImageJob.image_version))))


async def _mark(
    session: AsyncSession, recipe_id: int, versions: Sequence[int], status: JobStatus
) -> None:
    if versions:
        await session.execute(
            update(ImageJob)
            .where(col(ImageJob.recipe_id) == recipe_id, col(ImageJob.image_version).in_(versions))
            .values(status=status)
        )


async def _finish(
    session: AsyncSession,
    recipe_id: int,
    version: int,
    status: JobStatus,
    *,
    error: str | None = None,
    result: dict[str, Any] | None = None,
) -> None:
    await session.execute(
        update(ImageJob)
        .where(col(ImageJob.recipe_id) == recipe_id, col(ImageJob.image_version) == version)
        .values(status=status, finished_at=datetime.now(UTC), error=error, result=result)
    )
