"""The export file: its format, its atomic write, its manifest and its verification.

Format (``SCHEMA_VERSION`` 2): UTF-8 without BOM, RFC 4180 — comma separator, fields quoted only
when they contain a comma, a double quote, CR or LF (quotes doubled inside), records ending in
CRLF: what Python's ``csv.writer`` writes with ``QUOTE_MINIMAL`` and a CRLF line terminator.
Timestamps are RFC 3339 in UTC, spelt the way PostgreSQL writes a timestamp (date and time
separated by a space, the fraction of a second only when not zero and without trailing zeros)
followed by ``+00:00``: ``2026-11-22 02:00:00+00:00``, ``2026-11-22 02:00:00.12+00:00``. Python's
``datetime.fromisoformat`` and PostgreSQL read it back as it is. Version 1 spelt them
``2026-11-22T02:00:00.000000+00:00``, which PostgreSQL's ``to_char`` made ~2x the cost of a bare
COPY of the rows; nothing else changed.

CSV injection (OWASP): a text field starting with ``=``, ``+``, ``-``, ``@``, TAB or CR is
prefixed with a single quote, which spreadsheets read as "this cell is text" and do not show.
Restoring from the file means removing that one quote from fields that start with ``'`` followed
by one of those characters (``strip_neutralising_prefix``).
"""

import csv
import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pydantic import AwareDatetime, BaseModel, ConfigDict

SCHEMA_VERSION: Final = 2
COLUMNS: Final = ("ID", "Username", "Email", "Date Joined", "Role", "Last Updated")
FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
NEUTRALISING_PREFIX: Final = "'"
#: Written after every timestamp (all are in UTC).
UTC_OFFSET: Final = "+00:00"
MANIFEST_SUFFIX: Final = ".json"
TEMP_SUFFIX: Final = ".tmp"


def neutralise(value: str) -> str:
    """The value a spreadsheet shows as text, never evaluates as a formula."""
    return NEUTRALISING_PREFIX + value if value.startswith(FORMULA_PREFIXES) else value


def strip_neutralising_prefix(value: str) -> str:
    """The original value of a field read back from an export."""
    if value.startswith(NEUTRALISING_PREFIX) and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def format_timestamp(moment: datetime) -> str:
    """``moment`` in UTC as the export writes it (PostgreSQL's ISO output, then ``+00:00``)."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    text = utc.isoformat(sep=" ", timespec="seconds")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + UTC_OFFSET


def csv_lines(rows: Iterable[Sequence[str]]) -> bytes:
    """Rows formatted exactly as the export writes them (header, tests, the reference path)."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


HEADER: Final = csv_lines([COLUMNS])


class CrlfRecords:
    """Rewrites PostgreSQL's CSV (records end in LF) to CRLF records, counting them.

    A LF inside a quoted field is data and stays as it is. Quotes are tracked across chunks:
    every ``"`` toggles the state (a doubled ``""`` toggles twice), so chunk boundaries may fall
    anywhere.
    """

    def __init__(self) -> None:
        self.records = 0
        self._in_quotes = False

    def convert(self, chunk: bytes) -> bytes:
        if not self._in_quotes and b'"' not in chunk:
            self.records += chunk.count(b"\n")
            return chunk.replace(b"\n", b"\r\n")
        parts = chunk.split(b'"')
        for index, part in enumerate(parts):
            if index:
                self._in_quotes = not self._in_quotes
            if not self._in_quotes and b"\n" in part:
                self.records += part.count(b"\n")
                parts[index] = part.replace(b"\n", b"\r\n")
        return b'"'.join(parts)


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    sha256: str
    size: int


def write_atomically(path: Path, chunks: Iterable[bytes]) -> WrittenFile:
    """Write ``chunks`` to ``path`` so that ``path`` is either absent/old or complete.

    A temporary file in the same directory (so the rename cannot cross file systems) is written,
    fsynced and renamed over ``path``; then the directory is fsynced so the rename itself survives
    a power cut. Any failure removes the temporary file. Mode 0600: user data.
    """
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    temp = Path(temp_name)
    digest = hashlib.sha256()
    size = 0
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as file:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(directory)
    return WrittenFile(path=path, sha256=digest.hexdigest(), size=size)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete temporary files a killed process left behind (only ever called under the lock)."""
    stale = [p for p in directory.glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


class Manifest(BaseModel):
    """What ``backup verify`` checks a file against; written beside it as ``<file>.json``."""

    model_config = ConfigDict(frozen=True)

    schema_version: int
    file: str
    sha256: str
    rows: int
    columns: tuple[str, ...]
    #: The newest ``Last Updated`` in the file: the export includes every change up to it.
    newest_updated_at: AwareDatetime | None
    slot: AwareDatetime
    created_at: AwareDatetime


def manifest_path(export_path: Path) -> Path:
    return export_path.with_name(export_path.name + MANIFEST_SUFFIX)


def write_manifest(export_path: Path, manifest: Manifest) -> Path:
    target = manifest_path(export_path)
    write_atomically(target, [manifest.model_dump_json(indent=2).encode() + b"\n"])
    return target


def read_manifest(export_path: Path) -> Manifest:
    return Manifest.model_validate_json(manifest_path(export_path).read_bytes())


class VerificationError(Exception):
    """The file does not match its manifest (or the manifest is missing or unreadable)."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def count_records(path: Path) -> tuple[tuple[str, ...], int]:
    """The header and the number of data records, parsed as CSV (streamed)."""
    with path.open(encoding="utf-8", newline="") as file:
        reader: Iterator[list[str]] = csv.reader(file)
        header = tuple(next(reader, []))
        return header, sum(1 for _ in reader)


def verify_export(path: Path) -> Manifest:
    """Check ``path`` against its manifest: checksum, row count and columns."""
    if not path.is_file():
        raise VerificationError(f"{path}: no such file")
    try:
        manifest = read_manifest(path)
    except FileNotFoundError:
        raise VerificationError(f"{manifest_path(path)}: manifest missing") from None
    except ValueError as exc:
        raise VerificationError(f"{manifest_path(path)}: unreadable manifest: {exc}") from None
    actual = file_sha256(path)
    if actual != manifest.sha256:
        raise VerificationError(
            f"{path}: sha256 {actual} does not match the manifest's {manifest.sha256}"
        )
    try:
        header, rows = count_records(path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise VerificationError(f"{path}: not a readable UTF-8 CSV: {exc}") from None
    if header != manifest.columns:
        raise VerificationError(f"{path}: columns {header} differ from {manifest.columns}")
    if rows != manifest.rows:
        raise VerificationError(f"{path}: {rows} rows, the manifest says {manifest.rows}")
    return manifest
