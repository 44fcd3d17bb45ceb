"""``backup worker | migrate | run-now | verify FILE``."""

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from backup.csvfile import VerificationError, verify_export
from backup.db import SessionMaker, create_engine, create_session_maker, libpq_url
from backup.exports import Exporter, ExportError
from backup.handlers import register_handlers
from backup.settings import BACKUP_JOB, QUEUE_NAME, SERVICE_NAME, Settings
from servicekit.consumer import Consumer
from servicekit.health import Readiness
from servicekit.migrations import ensure_database, upgrade_database
from servicekit.runtime import Messaging, run_worker
from servicekit.ticks import TickEmitter

SERVICE_DIR = Path(__file__).resolve().parents[2]


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


def build_worker(settings: Settings, engine: AsyncEngine) -> tuple[Messaging, Readiness]:
    """The worker's consumer, tick emitter and outbox relay (the ticks go out through it)."""
    session_maker = create_session_maker(engine)
    consumer = Consumer(
        queue=QUEUE_NAME,
        producer=SERVICE_NAME,
        session_maker=session_maker,
        retry_policy=settings.retry_policy,
        prefetch=settings.prefetch,
    )
    register_handlers(consumer, build_exporter(settings))
    messaging = Messaging(
        amqp_url=settings.amqp_url,
        database_url=settings.database_url,
        session_maker=session_maker,
        consumers=[consumer],
        emitters=[build_emitter(settings, session_maker)],
        poll_interval=settings.outbox_poll_interval,
    )
    return messaging, Readiness(engine=engine, bus=messaging.bus, consumers=[consumer])


async def run_worker_process(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    messaging, readiness = build_worker(settings, engine)
    try:
        await run_worker(messaging, readiness, host=settings.health_host, port=settings.health_port)
    finally:
        await engine.dispose()


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
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.command == "worker":
        asyncio.run(run_worker_process(settings))
    elif args.command == "migrate":
        ensure_database(settings.database_url)
        upgrade_database(SERVICE_DIR, settings.database_url)
    elif args.command == "run-now":
        return run_now(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
