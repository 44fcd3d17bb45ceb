import csv
import io
import json
import stat
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql
from psycopg.abc import Buffer

from backup.csvfile import (
    FORMULA_PREFIXES,
    HEADER,
    SCHEMA_VERSION,
    csv_lines,
    format_timestamp,
    manifest_path,
    neutralise,
    read_manifest,
    strip_neutralising_prefix,
    verify_export,
)
from backup.db import SessionMaker, libpq_url
from backup.exports import Exporter, ExportError, RowSource, copy_users, neutralised
from backup.main import main
from backup.service import apply_user_deletion, apply_user_snapshot
from contracts import UserDeleted, UserRegistered, UserRole
from servicekit.testing import metric_value

from ..conftest import JOINED, registered

pytestmark = pytest.mark.integration

SUNDAY = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)

TRICKY = [
    ('=HYPERLINK("http://evil.example","click")', "=cmd|' /C calc'!A0@evil.example"),
    ("+1234", "+plus@example.com"),
    ("-2+3", "-minus@example.com"),
    ("@SUM(A1:A9)", "@at.example.com"),
    ("\tTabbed", "tab@example.com"),
    ("\rCarriage", "cr@example.com"),
    ("comma,name", "comma@example.com"),
    ('quote"name', "quote@example.com"),
    ("multi\nline", "nl@example.com"),
    ("ünïcødé 用户", ""),
    ("plain", "a=b@example.com"),
]


def tricky_users() -> list[UserRegistered]:
    return [
        registered(
            index + 1,
            username,
            email=email,
            role=UserRole.SELLER if index % 2 else UserRole.CUSTOMER,
            updated_at=JOINED + timedelta(hours=index, microseconds=index),
        )
        for index, (username, email) in enumerate(TRICKY)
    ]


async def store(session_maker: SessionMaker, *users: UserRegistered) -> None:
    async with session_maker() as session, session.begin():
        for user in users:
            await apply_user_snapshot(session=session, snapshot=user)


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def read_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.reader(file))


def expected_row(user: UserRegistered) -> list[str]:
    return [
        str(user.user_id),
        neutralise(user.username),
        neutralise(user.email or ""),
        format_timestamp(user.date_joined),
        user.role.value,
        format_timestamp(user.updated_at),
    ]


async def test_export_neutralises_formulas_and_round_trips(
    session_maker: SessionMaker, exporter: Exporter
) -> None:
    users = tricky_users()
    await store(session_maker, *users)

    result = exporter.export_slot(SUNDAY, trigger="schedule")

    assert result.written and result.path.name == "users_2026-11-22.csv"
    # Byte for byte what csv.writer(QUOTE_MINIMAL, CRLF) writes for the neutralised values.
    assert result.path.read_bytes() == HEADER + csv_lines([expected_row(u) for u in users])
    header, *rows = read_rows(result.path)
    assert header == ["ID", "Username", "Email", "Date Joined", "Role", "Last Updated"]
    for row, (username, email) in zip(rows, TRICKY, strict=True):
        assert not row[1].startswith(("=", "+", "-", "@", "\t", "\r"))
        assert [strip_neutralising_prefix(row[1]), strip_neutralising_prefix(row[2])] == [
            username,
            email,
        ]
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    manifest = read_manifest(result.path)
    assert (manifest.rows, manifest.slot, manifest.schema_version) == (
        len(users),
        SUNDAY,
        SCHEMA_VERSION,
    )
    assert manifest.newest_updated_at == max(u.updated_at for u in users)
    assert metric_value("backup_rows_exported") == len(users)


#: First characters around the SQL's shortcut (any code above the highest prefix, "@" = 64).
FORMULA_EDGE_CASES = [
    *FORMULA_PREFIXES,
    "",
    "=1+1",
    "@",
    "A",
    "?x",
    "0",
    " =x",
    "'=already quoted",
    "\x01x",
    "\nx",
    "é=",
    "用户",
    "\uff1d1",  # fullwidth "=": not a prefix, like in Python
    "x=1",
]


def test_sql_neutralising_matches_python_for_every_first_character(clean_database: str) -> None:
    query = sql.SQL(
        "SELECT {} FROM unnest(%s::text[]) WITH ORDINALITY AS v(value, n) ORDER BY n"
    ).format(neutralised("value"))
    with psycopg.connect(libpq_url(clean_database)) as conn:
        exported = [row[0] for row in conn.execute(query, (FORMULA_EDGE_CASES,))]
    # '' comes back as NULL on purpose: COPY then writes an empty field, as csv.writer does.
    assert exported == [neutralise(value) or None for value in FORMULA_EDGE_CASES]


MOMENTS = [
    SUNDAY,
    SUNDAY.replace(microsecond=120_000),
    SUNDAY.replace(microsecond=123_456),
    SUNDAY.replace(microsecond=1),
    datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
    datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Paris")),
    datetime(2026, 1, 5, 9, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
]


async def test_timestamps_are_utc_whatever_the_session_settings(
    session_maker: SessionMaker, clean_database: str
) -> None:
    await store(
        session_maker,
        *(registered(n, f"u{n}", date_joined=m, updated_at=m) for n, m in enumerate(MOMENTS, 1)),
    )
    with psycopg.connect(libpq_url(clean_database)) as conn:
        conn.execute("SET DateStyle = 'SQL, DMY'")
        conn.execute("SET TimeZone = 'America/St_Johns'")  # -03:30
        with conn.transaction():
            exported = b"".join(copy_users(conn))
    rows = list(csv.reader(io.StringIO(exported.decode(), newline="")))
    assert [(row[3], row[5]) for row in rows] == [(format_timestamp(m),) * 2 for m in MOMENTS]
    assert [datetime.fromisoformat(row[3]) for row in rows] == MOMENTS
    assert rows[0][3] == "2026-11-22 02:00:00+00:00"
    assert rows[1][3] == "2026-11-22 02:00:00.12+00:00"


async def test_deleted_users_leave_the_export(
    session_maker: SessionMaker, exporter: Exporter
) -> None:
    await store(session_maker, registered(1, "stays"), registered(2, "leaves"))
    async with session_maker() as session, session.begin():
        await apply_user_deletion(
            session=session,
            deletion=UserDeleted(user_id=2, username="leaves", version=2, deleted_at=SUNDAY),
        )
    result = exporter.export_slot(SUNDAY, trigger="schedule")
    assert [row[1] for row in read_rows(result.path)[1:]] == ["stays"]


async def test_a_user_without_an_email_is_exported_with_an_empty_cell(
    session_maker: SessionMaker, exporter: Exporter
) -> None:
    """Registration does not require an address (user.registered v2 carries email None)."""
    no_email = UserRegistered.model_validate(
        {**registered(1, "noaddr").model_dump(), "email": None}
    )
    await store(session_maker, no_email, registered(2, "withaddr"))
    result = exporter.export_slot(SUNDAY, trigger="schedule")
    assert [row[1:3] for row in read_rows(result.path)[1:]] == [
        ["noaddr", ""],
        ["withaddr", "withaddr@example.com"],
    ]
    assert verify_export(result.path).rows == 2


async def test_same_slot_twice_gives_one_file(
    session_maker: SessionMaker, exporter: Exporter, backup_dir: Path
) -> None:
    await store(session_maker, registered(1, "ann"))
    first = exporter.export_slot(SUNDAY, trigger="schedule")
    await store(session_maker, registered(2, "later"))
    again = Exporter(exporter.database_url, backup_dir, keep_last=8).export_slot(
        SUNDAY, trigger="schedule"
    )
    assert first.written and not again.written
    assert again.path == first.path and again.manifest.sha256 == first.manifest.sha256
    assert names(backup_dir) == [
        "users_2026-11-22.csv",
        "users_2026-11-22.csv.json",
    ]
    assert len(read_rows(first.path)) == 2  # header + ann: the later user waits for next slot


async def test_concurrent_exports_of_one_slot_write_it_once(
    session_maker: SessionMaker, exporter: Exporter, backup_dir: Path
) -> None:
    await store(session_maker, registered(1, "ann"))
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(
            pool.map(lambda _: exporter.export_slot(SUNDAY, trigger="schedule"), range(3))
        )
    assert sum(result.written for result in results) == 1
    assert len(names(backup_dir)) == 2


def crashing_source(backup_dir: Path, seen_partial: list[Path]) -> RowSource:
    def source(conn: psycopg.Connection[Any]) -> Generator[Buffer, None, None]:
        for count, chunk in enumerate(copy_users(conn, block_bytes=1), start=1):
            yield chunk
            if count == 3:
                seen_partial.extend(backup_dir.glob(".users_*.tmp"))
                raise ConnectionError("server closed the connection unexpectedly")

    return source


async def test_crash_mid_stream_leaves_no_file_under_the_final_name(
    session_maker: SessionMaker, exporter: Exporter, backup_dir: Path
) -> None:
    await store(session_maker, *(registered(i, f"user{i}") for i in range(1, 11)))
    before = metric_value("backup_runs_total", outcome="failed")
    partial: list[Path] = []
    broken = Exporter(
        exporter.database_url,
        backup_dir,
        keep_last=8,
        source=crashing_source(backup_dir, partial),
    )

    with pytest.raises(ConnectionError):
        broken.export_slot(SUNDAY, trigger="schedule")

    assert len(partial) == 1  # the crash happened while the temporary file was being written
    assert names(backup_dir) == []
    assert metric_value("backup_runs_total", outcome="failed") == before + 1
    retried = exporter.export_slot(SUNDAY, trigger="schedule")
    assert retried.written and len(read_rows(retried.path)) == 11


async def test_a_short_stream_is_never_renamed(
    session_maker: SessionMaker, exporter: Exporter, backup_dir: Path
) -> None:
    await store(session_maker, registered(1, "ann"), registered(2, "bob"))

    def first_row_only(conn: psycopg.Connection[Any]) -> Generator[Buffer, None, None]:
        rows = copy_users(conn, block_bytes=1)  # a block per row
        yield next(rows)
        rows.close()

    truncated = Exporter(exporter.database_url, backup_dir, keep_last=8, source=first_row_only)
    with pytest.raises(ExportError, match="streamed 1 rows, expected 2"):
        truncated.export_slot(SUNDAY, trigger="schedule")
    assert names(backup_dir) == []


async def test_a_file_finished_before_a_crash_is_adopted_not_rewritten(
    session_maker: SessionMaker, exporter: Exporter, clean_database: str
) -> None:
    await store(session_maker, registered(1, "ann"))
    first = exporter.export_slot(SUNDAY, trigger="schedule")
    with psycopg.connect(libpq_url(clean_database), autocommit=True) as conn:
        conn.execute("DELETE FROM exports")  # as if the commit after the manifest was lost
    await store(session_maker, registered(2, "bob"))

    again = exporter.export_slot(SUNDAY, trigger="schedule")

    assert not again.written and again.manifest == first.manifest
    assert len(read_rows(first.path)) == 2


async def test_two_slots_on_one_date_get_distinct_names(exporter: Exporter) -> None:
    ad_hoc = exporter.export_slot(SUNDAY - timedelta(hours=1, seconds=1), trigger="run-now")
    scheduled = exporter.export_slot(SUNDAY, trigger="schedule")
    assert ad_hoc.path.name == "users_2026-11-22.csv"
    assert scheduled.path.name == "users_2026-11-22T020000Z.csv"
    assert read_manifest(scheduled.path).slot == SUNDAY


async def test_retention_keeps_the_last_n_exports(clean_database: str, backup_dir: Path) -> None:
    exporter = Exporter(libpq_url(clean_database), backup_dir, keep_last=2)
    slots = [SUNDAY - timedelta(weeks=n) for n in (3, 2, 1, 0)]
    results = [exporter.export_slot(slot, trigger="schedule") for slot in slots]

    assert [[p.name for p in result.pruned] for result in results] == [
        [],
        [],
        ["users_2026-11-01.csv"],
        ["users_2026-11-08.csv"],
    ]
    assert names(backup_dir) == [
        "users_2026-11-15.csv",
        "users_2026-11-15.csv.json",
        "users_2026-11-22.csv",
        "users_2026-11-22.csv.json",
    ]
    assert not exporter.export_slot(slots[0], trigger="schedule").written  # never re-exported


@pytest.mark.usefixtures("restore_logging")
async def test_run_now_and_verify_from_the_command_line(
    session_maker: SessionMaker,
    clean_database: str,
    backup_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await store(session_maker, registered(1, "ann"), registered(2, "=1+1"))
    monkeypatch.setenv("BACKUP_DATABASE_URL", clean_database)
    monkeypatch.setenv("BACKUP_BACKUP_DIR", str(backup_dir))

    assert main(["run-now"]) == 0
    [export] = [backup_dir / name for name in names(backup_dir) if name.endswith(".csv")]
    *logged, printed = capsys.readouterr().out.splitlines()
    assert "2 rows, written" in printed
    exported = [json.loads(line) for line in logged if "exported 2 users" in line]
    assert [(e["service"], e["logger"]) for e in exported] == [("backup", "backup.exports")]
    assert main(["verify", str(export)]) == 0

    export.write_bytes(export.read_bytes().replace(b"ann", b"amm"))
    assert main(["verify", str(export)]) == 1
    assert "does not match the manifest" in capsys.readouterr().err

    manifest_path(export).unlink()
    assert main(["verify", str(export)]) == 1
    assert "manifest missing" in capsys.readouterr().err
