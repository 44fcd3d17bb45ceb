"""``backup worker | migrate | run-now | verify FILE``."""

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from backup.csvfile import VerificationError, verify_export
from backup.db import SessionMaker, create_engine, create_session_maker, libpq_url
from backup.exports import Exporter, ExportError
from backup.handlers import register_handlers
from backup.metrics import LAST_SUCCESS, ROWS_EXPORTED
from backup.models import Export
from backup.settings import BACKUP_JOB, QUEUE_NAME, SERVICE_NAME, Settings
from servicekit.consumer import Consumer
from servicekit.health import Readiness
from servicekit.migrations import ensure_database, upgrade_database
from servicekit.runtime import Messaging, configure_observability, declare_queues, run_worker
from servicekit.ticks import TickEmitter

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


def build_emitter(settings: Settings, session_maker: SessionMaker) -> TickEmitter:
    return TickEmitter(
        session_maker,
        job=BACKUP_JOB,
        cron=settings.backup_cron,
        producer=SERVICE_NAME,
        grace=settings.catch_up_grace,
    )


def build_consumer(settings: Settings, session_maker: SessionMaker) -> Consumer:
    """The consumer of ``backup.events``, as the worker runs it and ``migrate`` declares it."""
    consumer = Consumer(
        queue=QUEUE_NAME,
        producer=SERVICE_NAME,
        session_maker=session_maker,
        retry_policy=settings.retry_policy,
        prefetch=settings.prefetch,
        batch_size=settings.consumer_batch_size,
    )
    register_handlers(consumer, build_exporter(settings))
    return consumer


def build_worker(settings: Settings, engine: AsyncEngine) -> tuple[Messaging, Readiness]:
    """The worker's consumer, tick emitter and outbox relay (the ticks go out through it)."""
    session_maker = create_session_maker(engine)
    consumer = build_consumer(settings, session_maker)
    messaging = Messaging(
        amqp_url=settings.amqp_url,
        database_url=settings.database_url,
        session_maker=session_maker,
        consumers=[consumer],
        emitters=[build_emitter(settings, session_maker)],
        poll_interval=settings.outbox_poll_interval,
        inbox_retention=settings.inbox_retention,
    )
    return messaging, Readiness(engine=engine, bus=messaging.bus, consumers=[consumer])


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


async def run_worker_process(settings: Settings) -> None:
    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        idle_timeout=settings.database_idle_timeout,
    )
    messaging, readiness = build_worker(settings, engine)
    messaging.spawn(
        restore_export_gauges_when_reachable(create_session_maker(engine), settings.backups_path),
        name="restore-export-gauges",
        forever=False,
    )
    try:
        await run_worker(messaging, readiness, host=settings.health_host, port=settings.health_port)
    finally:
        await engine.dispose()


def migrate(settings: Settings) -> None:
    """Create and upgrade the database, then declare the worker's queue and its bindings.

    Not left to the worker alone: the exchange drops an event no queue is bound for yet, so
    users registered before the worker's first start would be missing from every export.
    """
    ensure_database(settings.database_url)
    upgrade_database(SERVICE_DIR, settings.database_url)
    # Declaring needs no database: this engine is never connected.
    consumer = build_consumer(settings, create_session_maker(create_engine(settings.database_url)))
    asyncio.run(
        declare_queues(settings.amqp_url, [consumer], management_url=settings.amqp_management_url)
    )


def run_now(settings: Settings) -> int:
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


def verify(path: Path) -> int:
    try:
        manifest = verify_export(path)
    except VerificationError as exc:
        print(f"verification FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: OK ({manifest.rows} rows, sha256 {manifest.sha256})")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="backup", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="consume user events, export on schedule, serve health")
    commands.add_parser("migrate", help="create the database if missing and migrate it")
    commands.add_parser("run-now", help="export the user copy now")
    check = commands.add_parser("verify", help="check an export against its manifest")
    check.add_argument("file", type=Path)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "verify":
        return verify(args.file)  # needs no settings: works on a copied-off file
    settings = Settings()
    configure_observability(SERVICE_NAME, log_level=settings.log_level, json_logs=settings.log_json)
    if args.command == "worker":
        asyncio.run(run_worker_process(settings))
    elif args.command == "migrate":
        migrate(settings)
    elif args.command == "run-now":
        return run_now(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
