"""The backup service: exports, and its declaration (``backup worker|migrate|run-now|verify``)."""

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from backup.csvfile import VerificationError, verify_export
from backup.db import SessionMaker, libpq_url
from backup.exports import Exporter, ExportError
from backup.handlers import HANDLERS
from backup.metrics import LAST_SUCCESS, ROWS_EXPORTED
from backup.models import Export
from backup.settings import BACKUP_JOB, SERVICE_NAME, Settings
from servicekit.service import Command, Schedule, ServiceSpec, Task, WorkerContext

SERVICE_DIR = Path(__file__).resolve().parents[2]
#: Seconds between attempts to read the newest export while the database is unreachable.
GAUGE_RETRY_INTERVAL = 5.0

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


def run_now(settings: Settings, args: argparse.Namespace) -> int:
    """Export an ad-hoc slot: now, to the second (so it is also recorded once)."""
    slot = datetime.now(UTC).replace(microsecond=0)
    try:
        result = build_exporter(settings).export_slot(slot, trigger="run-now")
    except (ExportError, OSError, psycopg.Error) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    state = "written" if result.written else "already exported"
    print(f"{result.path}: {result.manifest.rows} rows, {state}")
    return 0


def verify(settings: Settings, args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        manifest = verify_export(path)
    except VerificationError as exc:
        print(f"verification FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: OK ({manifest.rows} rows, sha256 {manifest.sha256})")
    return 0


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path)


service = ServiceSpec(
    name=SERVICE_NAME,
    settings=Settings,
    service_dir=SERVICE_DIR,
    handlers=HANDLERS,
    schedules=[
        Schedule(BACKUP_JOB, cron=lambda s: s.backup_cron, grace=lambda s: s.catch_up_grace)
    ],
    resources=open_exporter,
    tasks=[Task("restore-export-gauges", restore_gauges_task, forever=False)],
    commands={
        "run-now": Command("export the user copy now", run_now),
        # Needs no settings: works on a copied-off file.
        "verify": Command(
            "check an export against its manifest",
            verify,
            arguments=add_verify_arguments,
            needs_settings=False,
        ),
    },
)
main = service.main

if __name__ == "__main__":
    raise SystemExit(main())
