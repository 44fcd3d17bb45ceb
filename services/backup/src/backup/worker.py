"""What the backup worker opens and runs besides its consumer: the exporter the weekly tick runs,
and the last-success gauges restored from the newest export at start."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from backup.db import SessionMaker, libpq_url
from backup.exports import Exporter
from backup.metrics import LAST_SUCCESS, ROWS_EXPORTED
from backup.models import Export
from backup.settings import Settings
from servicekit.service import WorkerContext

logger = logging.getLogger(__name__)


def build_exporter(settings: Settings) -> Exporter:
    return Exporter(
        database_url=libpq_url(settings.database_url),
        directory=settings.backups_path,
        keep_last=settings.keep_last,
    )


@asynccontextmanager
async def open_exporter(
    settings: Settings, session_maker: SessionMaker
) -> AsyncIterator[list[object]]:
    """The worker's resources: the exporter the weekly tick runs."""
    yield [build_exporter(settings)]


#: Seconds between attempts to read the newest export while the database is unreachable.
GAUGE_RETRY_INTERVAL = 5.0


async def restore_export_gauges(session_maker: SessionMaker, directory: Path) -> Export | None:
    """Set the last-success gauges from the newest export still on disk; return that export.

    Without this a restarted worker reports 0 until its next weekly export, and BackupMissing
    fires although last week's backup is there. An export whose file is gone is no backup.
    """
    query = (
        select(Export)
        .where(col(Export.pruned_at).is_(None))
        .order_by(col(Export.created_at).desc())
    )
    async with session_maker() as session:
        exports = (await session.scalars(query)).all()
    for export in exports:
        if await asyncio.to_thread((directory / export.file_name).exists):
            LAST_SUCCESS.set(export.created_at.timestamp())
            ROWS_EXPORTED.set(export.rows)
            return export
    return None


async def restore_export_gauges_when_reachable(
    session_maker: SessionMaker, directory: Path, *, retry_interval: float = GAUGE_RETRY_INTERVAL
) -> None:
    """``restore_export_gauges``, retried while the database is down (the worker still starts)."""
    while True:
        try:
            await restore_export_gauges(session_maker, directory)
            return
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("reading the newest export failed (%s); retrying", exc)
            await asyncio.sleep(retry_interval)


async def restore_gauges_task(worker: WorkerContext[Settings]) -> None:
    await restore_export_gauges_when_reachable(worker.session_maker, worker.settings.backups_path)
