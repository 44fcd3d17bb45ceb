"""The worker end to end: user events and ticks through the real broker, then the export."""

import asyncio
import csv
import os
import socket
import sys
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlmodel import col

from backup.csvfile import read_manifest, strip_neutralising_prefix
from backup.db import SessionMaker
from backup.exports import Exporter, file_names
from backup.main import service
from backup.metrics import LAST_SUCCESS, ROWS_EXPORTED
from backup.settings import Settings
from backup.worker import restore_export_gauges
from contracts import Event, ScheduleTick, UserDeleted, UserUpdated, make_envelope
from servicekit import Bus, InboxMessage
from servicekit.testing import eventually, metric_value

from ..conftest import JOINED, registered

pytestmark = pytest.mark.integration

#: A cron whose latest slot is years old: the worker's own emitter stays quiet in these tests.
NEVER_DUE = "0 2 29 2 *"


def updated(user_id: int, username: str, version: int) -> UserUpdated:
    return UserUpdated.model_validate(
        registered(user_id, username).model_dump()
        | {"version": version, "updated_at": JOINED + timedelta(days=version)}
    )


async def handled(session_maker: SessionMaker) -> int:
    query = (
        select(func.count())
        .select_from(InboxMessage)
        .where(col(InboxMessage.consumer) == service.queue)
    )
    async with session_maker() as session:
        return int(await session.scalar(query) or 0)


async def exported_files(directory: Path) -> list[Path]:
    return await asyncio.to_thread(lambda: sorted(directory.glob("*.csv")))


async def publish(amqp_url: str, events: list[Event]) -> None:
    bus = Bus(amqp_url)
    await bus.connect()
    try:
        await bus.publish_many([(make_envelope(e, producer="auth"), {}) for e in events])
    finally:
        await bus.close()


async def test_users_from_events_appear_in_the_next_scheduled_export(
    clean_database: str,
    amqp_url: str,
    session_maker: SessionMaker,
    backup_dir: Path,
) -> None:
    settings = Settings(
        database_url=clean_database,
        amqp_url=amqp_url,
        backup_dir=backup_dir,
        backup_cron=NEVER_DUE,
        retry_delays=(0.05, 0.1),
        outbox_poll_interval=0.1,
    )
    async with service.open_worker(settings) as worker:
        await worker.messaging.start()
        try:
            await eventually(lambda: _ready(worker.readiness.report()))
            now = datetime.now(UTC)
            events: list[Event] = [
                registered(1, "ann"),
                updated(1, "ann-latest", 3),
                updated(1, "ann-stale", 2),  # arrives after version 3: ignored
                registered(2, "bob"),
                UserDeleted(user_id=2, username="bob", version=3, deleted_at=now),
                updated(2, "bob-zombie", 2),  # older than the deletion: no resurrection
                registered(3, '=HYPERLINK("http://evil.example","x")', email="@evil.example"),
                ScheduleTick(job="daily-digest", slot=now, cron="0 6 * * *"),  # the notifier's
            ]
            await publish(amqp_url, events)

            async def all_handled() -> bool:
                return await handled(session_maker) == len(events)

            await eventually(all_handled)
            assert not await exported_files(backup_dir)  # the other service's tick: no export

            # The real schedule's latest slot, through the outbox.
            [weekly] = service.emitters(Settings(database_url=clean_database), session_maker)
            tick = await weekly.emit_due(now)
            assert tick is not None
            export = backup_dir / file_names(tick.slot)[0]

            async def exported() -> bool:
                return (backup_dir / (export.name + ".json")).exists()

            await eventually(exported)
        finally:
            await worker.messaging.stop()

    with export.open(encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))[1:]
    assert [(row[0], strip_neutralising_prefix(row[1]), row[2]) for row in rows] == [
        ("1", "ann-latest", "ann-latest@example.com"),
        ("3", '=HYPERLINK("http://evil.example","x")', "'@evil.example"),
    ]
    manifest = read_manifest(export)
    assert manifest.slot == tick.slot and manifest.rows == 2
    assert manifest.newest_updated_at == JOINED + timedelta(days=3)


async def _ready(report: Awaitable[tuple[bool, object]]) -> bool:
    ready, _ = await report
    return ready


async def test_a_missed_weekly_slot_is_caught_up_within_the_grace(
    clean_database: str, session_maker: SessionMaker
) -> None:
    [emitter] = service.emitters(Settings(database_url=clean_database), session_maker)
    sunday = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    tick = await emitter.emit_due(sunday + timedelta(days=3))  # worker was down until Wednesday
    assert tick is not None and (tick.job, tick.slot) == ("weekly-backup", sunday)
    assert await emitter.emit_due(sunday + timedelta(days=4)) is None  # emitted once


def last_success() -> float:
    return metric_value("backup_last_success_timestamp_seconds")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def scraped_last_success(port: int) -> float | None:
    async with httpx.AsyncClient() as client:
        try:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
        except httpx.TransportError:
            return None  # not serving yet
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "backup_last_success_timestamp_seconds":
                return sample.value
    return None


async def test_a_restarted_worker_reports_the_newest_export_as_the_last_success(
    clean_database: str, amqp_url: str, backup_dir: Path, exporter: Exporter, tmp_path: Path
) -> None:
    sunday = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    exporter.export_slot(sunday - timedelta(days=7), trigger="schedule")
    newest = exporter.export_slot(sunday, trigger="schedule")
    port = free_port()
    environment = os.environ | {
        "BACKUP_DATABASE_URL": clean_database,
        "BACKUP_AMQP_URL": amqp_url,
        "BACKUP_BACKUP_DIR": str(backup_dir),
        "BACKUP_BACKUP_CRON": NEVER_DUE,
        "BACKUP_HEALTH_PORT": str(port),
    }
    with (tmp_path / "worker.log").open("wb") as log:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "backup.main", "worker", env=environment, stdout=log, stderr=log
        )
        try:

            async def restored() -> bool:
                return await scraped_last_success(port) == newest.manifest.created_at.timestamp()

            await eventually(restored)
        finally:
            worker.terminate()
            await worker.wait()


async def test_an_export_whose_file_is_gone_does_not_count_as_the_last_success(
    session_maker: SessionMaker, backup_dir: Path, exporter: Exporter
) -> None:
    sunday = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    older = exporter.export_slot(sunday - timedelta(days=7), trigger="schedule")
    newest = exporter.export_slot(sunday, trigger="run-now")
    newest.path.unlink()
    LAST_SUCCESS.set(0)
    ROWS_EXPORTED.set(-1)

    restored = await restore_export_gauges(session_maker, backup_dir)

    assert restored is not None and restored.file_name == older.path.name
    assert last_success() == older.manifest.created_at.timestamp()
    assert metric_value("backup_rows_exported") == older.manifest.rows


async def test_without_any_export_the_last_success_stays_unset(
    session_maker: SessionMaker, backup_dir: Path
) -> None:
    LAST_SUCCESS.set(0)
    assert await restore_export_gauges(session_maker, backup_dir) is None
    assert last_success() == 0
