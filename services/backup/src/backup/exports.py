"""Exporting the user copy for one slot: once per slot, streamed, atomic, then pruned.

Streaming: ``COPY (SELECT ...) TO STDOUT (FORMAT csv)`` rather than a server-side cursor and
``csv.writer``, because COPY formats the CSV inside PostgreSQL and the rows go to the file in
blocks, so memory stays flat (``bench/backup_export.py``: the cursor takes ~5x a bare
COPY; peak RSS is unchanged by the export). The CSV injection neutralising is therefore done in
the SQL (``neutralised``), built from the same ``FORMULA_PREFIXES`` as the Python ``neutralise``.
Two details make the bytes identical to ``csv.writer(QUOTE_MINIMAL)`` with CRLF records (a test
compares them): empty strings are exported as NULL, which PostgreSQL leaves unquoted like Python
(it writes ``""`` for an empty string), and PostgreSQL's LF record ends become CRLF
(``CrlfRecords``, a few per cent of the export's time).

Cost per row, measured as the PostgreSQL backend's CPU for 1,000,000 users: a bare COPY ~0.55 s.
The expressions are chosen to add little to it: timestamps are PostgreSQL's own ISO output plus
``+00:00`` (+0.1 s; ``to_char`` for a fixed-width spelling cost +0.6 s, see ``csvfile``), and the
neutralising tests the first character's code with ``ascii()``, letting any character above the
formula prefixes through at once (+0.05 s; ``left(col, 1) IN (...)`` cost +0.45 s). On the
client, psycopg returns COPY one row at a time; ``copy_users`` joins the rows into blocks in a
tight loop, so that the CRLF rewrite, the sha256 and the writes run once per block.

Once per slot: exports run one at a time (a PostgreSQL advisory lock, so across processes), and
the ``exports`` table's unique slot, committed after the file and its manifest are in place,
says a slot is done. A crash after the manifest but before that commit leaves a complete,
verified file that the next attempt adopts instead of rewriting.

Transactions: the exporter is a runner (the tick handler and ``backup run-now`` start it), not a
use case, and owns its transactions on its own autocommit connection: the export's snapshot
lasts while the file is written, and its ``exports`` row commits only once the file is in place,
neither of which fits a caller's transaction (the rule in ``tests/docs/test_code_shape.py``).

Naming: ``users_<YYYY-MM-DD>.csv`` after the slot's UTC date; when another slot already has
that name (``backup run-now`` on the day of a scheduled export, say), the time is added:
``users_<YYYY-MM-DD>T<HHMMSS>Z.csv``.
"""

import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import IsolationLevel, sql
from psycopg.abc import Buffer

from backup.csvfile import (
    COLUMNS,
    FORMULA_PREFIXES,
    HEADER,
    NEUTRALISING_PREFIX,
    SCHEMA_VERSION,
    UTC_OFFSET,
    CrlfRecords,
    Manifest,
    VerificationError,
    manifest_path,
    read_manifest,
    remove_stale_temporaries,
    verify_export,
    write_atomically,
    write_manifest,
)
from backup.metrics import LAST_SUCCESS, ROWS_EXPORTED, RUNS

logger = logging.getLogger(__name__)

#: Advisory lock held by whoever is exporting (worker or ``backup run-now``) in this database.
EXPORT_LOCK_KEY: Final = 0x6261636B  # "back"
#: Rows from COPY are joined into blocks of about this size before they are written.
BLOCK_BYTES: Final = 256 * 1024

#: Yields PostgreSQL-style CSV (LF record ends) of the live users, in the caller's transaction.
RowSource = Callable[[psycopg.Connection[Any]], Generator[Buffer, None, None]]

LIVE_USERS = sql.SQL("FROM users WHERE deleted_at IS NULL")


def neutralised(column: str) -> sql.Composable:
    """SQL for a text column as ``csvfile.neutralise`` would write it ('' as NULL, see above).

    ``ascii()`` is the code point of the first character in a UTF-8 database, 0 for ''. Most
    values start with a letter, above every formula prefix, and take the first branch alone.
    (In a non-UTF-8 multibyte database it rejects a non-ASCII first character: the export
    fails rather than let a value through unchecked.)
    """
    name = sql.Identifier(column)
    codes = [ord(prefix) for prefix in FORMULA_PREFIXES]
    return sql.SQL(
        "CASE WHEN ascii({name}) > {highest} THEN {name}"
        " WHEN ascii({name}) IN ({codes}) THEN {quote} || {name}"
        " ELSE NULLIF({name}, '') END"
    ).format(
        name=name,
        highest=sql.Literal(max(codes)),
        codes=sql.SQL(", ").join(sql.Literal(code) for code in codes),
        quote=sql.Literal(NEUTRALISING_PREFIX),
    )


def timestamp(column: str) -> sql.Composable:
    """SQL for ``csvfile.format_timestamp``; needs ``DateStyle`` ISO (``copy_users`` sets it)."""
    return sql.SQL("({} AT TIME ZONE 'UTC')::text || {}").format(
        sql.Identifier(column), sql.Literal(UTC_OFFSET)
    )


EXPORT_QUERY: Final = sql.SQL(
    "COPY (SELECT user_id, {username}, {email}, {joined}, {role}, {updated} {live}"
    " ORDER BY user_id) TO STDOUT (FORMAT csv)"
).format(
    username=neutralised("username"),
    email=neutralised("email"),
    role=neutralised("role"),
    joined=timestamp("date_joined"),
    updated=timestamp("updated_at"),
    live=LIVE_USERS,
)


def copy_users(
    conn: psycopg.Connection[Any], *, block_bytes: int = BLOCK_BYTES
) -> Generator[bytes, None, None]:
    """The live users as CSV from ``COPY ... TO STDOUT``, in blocks of whole rows."""
    conn.execute("SELECT set_config('DateStyle', 'ISO', true)")  # for this transaction
    with conn.cursor() as cursor, cursor.copy(EXPORT_QUERY) as copy:
        read_row = copy.read
        block = bytearray()
        while row := read_row():
            block += row
            if len(block) >= block_bytes:
                yield bytes(block)
                block.clear()
        if block:
            yield bytes(block)


class ExportError(Exception):
    """The export could not be written; nothing was left under the final name."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest: Manifest
    #: False when the slot had already been exported (nothing was written).
    written: bool
    pruned: tuple[Path, ...] = ()


def file_names(slot: datetime) -> tuple[str, str]:
    """The slot's file name, and the longer one used when another slot of that date has it."""
    slot = slot.astimezone(UTC)
    return f"users_{slot:%Y-%m-%d}.csv", f"users_{slot:%Y-%m-%dT%H%M%SZ}.csv"


@dataclass
class Exporter:
    """Writes the export of one slot; synchronous (the worker runs it in a thread)."""

    database_url: str
    directory: Path
    keep_last: int
    source: RowSource = copy_users

    def export_slot(self, slot: datetime, *, trigger: str) -> ExportResult:
        """Export ``slot`` unless it already was, then prune; on failure nothing partial is left."""
        slot = slot.astimezone(UTC)
        try:
            result = self._export_under_lock(slot, trigger)
        except Exception:
            RUNS.labels("failed").inc()
            raise
        RUNS.labels("written" if result.written else "already_exported").inc()
        LAST_SUCCESS.set(time.time())
        if result.written:
            ROWS_EXPORTED.set(result.manifest.rows)
        return result

    def _export_under_lock(self, slot: datetime, trigger: str) -> ExportResult:
        self.directory.mkdir(parents=True, exist_ok=True)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (EXPORT_LOCK_KEY,))
            try:
                result = self._export(conn, slot, trigger)
                pruned = self._prune(conn)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (EXPORT_LOCK_KEY,))
        return ExportResult(result.path, result.manifest, result.written, pruned)

    def _export(self, conn: psycopg.Connection[Any], slot: datetime, trigger: str) -> ExportResult:
        done = conn.execute("SELECT file_name FROM exports WHERE slot = %s", (slot,)).fetchone()
        if done is not None:
            path = self.directory / done[0]
            logger.info("slot %s already exported to %s", slot.isoformat(), path)
            return ExportResult(path, _recorded_manifest(conn, slot), written=False)
        remove_stale_temporaries(self.directory)
        path = self.directory / self._free_name(conn, slot)
        adopted = _finished_export(path, slot)
        if adopted is not None:
            logger.info("adopting %s, written before a crash", path)
            with conn.transaction():
                _record(conn, adopted, trigger)
            return ExportResult(path, adopted, written=False)
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        with conn.transaction():  # one snapshot for the summary and the rows
            summary = conn.execute(
                sql.SQL("SELECT count(*), max(updated_at) {}").format(LIVE_USERS)
            ).fetchone()
            assert summary is not None
            total, newest = summary
            with closing(self.source(conn)) as rows:
                written = write_atomically(path, self._file_chunks(rows, expected=total))
            manifest = Manifest(
                schema_version=SCHEMA_VERSION,
                file=path.name,
                sha256=written.sha256,
                rows=total,
                columns=COLUMNS,
                newest_updated_at=newest,
                slot=slot,
                created_at=datetime.now(UTC),
            )
            write_manifest(path, manifest)
            _record(conn, manifest, trigger)
        logger.info("exported %d users to %s", total, path)
        return ExportResult(path, manifest, written=True)

    def _file_chunks(self, rows: Iterable[Buffer], *, expected: int) -> Iterator[bytes]:
        """Header, then the rows with CRLF record ends."""
        yield HEADER
        records = CrlfRecords()
        for block in rows:
            yield records.convert(bytes(block))
        if records.records != expected:
            # Raised before the rename: a short or long file never gets the final name.
            raise ExportError(f"streamed {records.records} rows, expected {expected}")

    def _free_name(self, conn: psycopg.Connection[Any], slot: datetime) -> str:
        for name in file_names(slot):
            owner = conn.execute("SELECT 1 FROM exports WHERE file_name = %s", (name,)).fetchone()
            if owner is None and not _manifest_of_other_slot(self.directory / name, slot):
                return name
        raise ExportError(f"no free file name for slot {slot.isoformat()}")

    def _prune(self, conn: psycopg.Connection[Any]) -> tuple[Path, ...]:
        """Delete exports beyond the newest ``keep_last`` (by slot), file and manifest."""
        old = conn.execute(
            "SELECT id, file_name FROM exports WHERE pruned_at IS NULL"
            " ORDER BY slot DESC OFFSET %s",
            (self.keep_last,),
        ).fetchall()
        pruned: list[Path] = []
        for export_id, name in old:
            path = self.directory / name
            path.unlink(missing_ok=True)
            manifest_path(path).unlink(missing_ok=True)
            conn.execute("UPDATE exports SET pruned_at = now() WHERE id = %s", (export_id,))
            pruned.append(path)
            logger.info("pruned %s", path)
        return tuple(pruned)


def _record(conn: psycopg.Connection[Any], manifest: Manifest, trigger: str) -> None:
    conn.execute(
        "INSERT INTO exports (slot, file_name, trigger, rows, sha256, newest_updated_at,"
        " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            manifest.slot,
            manifest.file,
            trigger,
            manifest.rows,
            manifest.sha256,
            manifest.newest_updated_at,
            manifest.created_at,
        ),
    )


def _recorded_manifest(conn: psycopg.Connection[Any], slot: datetime) -> Manifest:
    row = conn.execute(
        "SELECT file_name, sha256, rows, newest_updated_at, created_at FROM exports"
        " WHERE slot = %s",
        (slot,),
    ).fetchone()
    assert row is not None
    name, sha256, rows, newest, created_at = row
    return Manifest(
        schema_version=SCHEMA_VERSION,
        file=name,
        sha256=sha256,
        rows=rows,
        columns=COLUMNS,
        newest_updated_at=newest,
        slot=slot,
        created_at=created_at,
    )


def _finished_export(path: Path, slot: datetime) -> Manifest | None:
    """The manifest of a complete, verified export of ``slot`` at ``path``, if there is one."""
    if not manifest_path(path).exists():
        return None
    try:
        manifest = verify_export(path)
    except VerificationError:
        return None
    return manifest if manifest.slot == slot else None


def _manifest_of_other_slot(path: Path, slot: datetime) -> bool:
    try:
        manifest = read_manifest(path)
    except (FileNotFoundError, ValueError):
        return False
    return manifest.slot != slot
