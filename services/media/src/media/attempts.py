"""Counting an image job's attempts, in transactions of their own.

Not a use case: each call commits at once, outside the handler's transaction, which holds the
job until its slow fetch, render and store are done and rolls back when they fail. A failed
attempt must stay counted (and its error recorded) after that rollback, so that a job that keeps
failing is seen to; the transaction rule of the use cases (``media.service``) does not apply.
"""

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col

from media.db import SessionMaker
from media.models import FINISHED, ImageJob, JobStatus


async def start(session_maker: SessionMaker, recipe_id: int, version: int) -> bool:
    """Count an attempt of an unfinished job (creating it); False if it already finished."""
    new_job = insert(ImageJob).values(
        recipe_id=recipe_id, image_version=version, status=JobStatus.PROCESSING, attempts=1
    )
    statement = new_job.on_conflict_do_update(
        index_elements=["recipe_id", "image_version"],
        set_={"attempts": col(ImageJob.attempts) + 1, "started_at": func.now()},
        where=col(ImageJob.status).not_in(list(FINISHED)),
    ).returning(col(ImageJob.id))
    async with session_maker() as session, session.begin():
        return await session.scalar(statement) is not None


async def record_error(
    session_maker: SessionMaker, recipe_id: int, version: int, error: str
) -> None:
    """Keep the error of a failed attempt on its job row."""
    async with session_maker() as session, session.begin():
        await session.execute(
            update(ImageJob)
            .where(col(ImageJob.recipe_id) == recipe_id, col(ImageJob.image_version) == version)
            .values(error=error[:2000])
        )
