import csv
import io
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from backup.csvfile import (
    COLUMNS,
    FORMULA_PREFIXES,
    HEADER,
    SCHEMA_VERSION,
    CrlfRecords,
    Manifest,
    VerificationError,
    csv_lines,
    format_timestamp,
    manifest_path,
    neutralise,
    strip_neutralising_prefix,
    verify_export,
    write_atomically,
    write_manifest,
)

SLOT = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_formula_prefixes_are_neutralised_and_restored(prefix: str) -> None:
    value = f'{prefix}HYPERLINK("http://evil","x")'
    assert neutralise(value) == "'" + value
    assert strip_neutralising_prefix(neutralise(value)) == value


@pytest.mark.parametrize("value", ["alice", "a=b", "'quoted", " =space first", ""])
def test_other_values_are_left_alone(value: str) -> None:
    assert neutralise(value) == value
    assert strip_neutralising_prefix(value) == value


POSTGRES_CSV = b'1,plain,a@x\n2,"multi\nline","say ""hi""\n"\n3,"a,b",c\n'
EXPECTED_CRLF = b'1,plain,a@x\r\n2,"multi\nline","say ""hi""\n"\r\n3,"a,b",c\r\n'


def test_record_ends_become_crlf_but_newlines_inside_quotes_stay() -> None:
    records = CrlfRecords()
    assert records.convert(POSTGRES_CSV) == EXPECTED_CRLF
    assert records.records == 3
    rows = list(csv.reader(io.StringIO(EXPECTED_CRLF.decode(), newline="")))
    assert rows[1] == ["2", "multi\nline", 'say "hi"\n']


@pytest.mark.parametrize("cut", range(1, len(POSTGRES_CSV)))
def test_conversion_does_not_depend_on_where_chunks_end(cut: int) -> None:
    records = CrlfRecords()
    out = records.convert(POSTGRES_CSV[:cut]) + records.convert(POSTGRES_CSV[cut:])
    assert out == EXPECTED_CRLF
    assert records.records == 3


def test_header_is_the_original_columns_then_role_and_last_updated() -> None:
    assert HEADER == b"ID,Username,Email,Date Joined,Role,Last Updated\r\n"


def test_atomic_write_gives_a_private_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "users_2026-11-22.csv"
    written = write_atomically(target, [b"a,b\r\n", b"c,d\r\n"])
    assert target.read_bytes() == b"a,b\r\nc,d\r\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert written.size == 10
    assert list(tmp_path.iterdir()) == [target]


def test_failure_mid_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "users_2026-11-22.csv"
    target.write_bytes(b"previous complete export")

    def crashing() -> Iterator[bytes]:
        yield b"ID,Username\r\n"
        yield b"1,half"
        temporaries = [p for p in tmp_path.iterdir() if p != target]
        assert len(temporaries) == 1  # the temporary file is being written
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, crashing())
    assert target.read_bytes() == b"previous complete export"
    assert list(tmp_path.iterdir()) == [target]


def write_export(directory: Path, rows: list[list[str]]) -> Path:
    path = directory / "users_2026-11-22.csv"
    written = write_atomically(path, [HEADER, csv_lines(rows)])
    write_manifest(
        path,
        Manifest(
            schema_version=SCHEMA_VERSION,
            file=path.name,
            sha256=written.sha256,
            rows=len(rows),
            columns=COLUMNS,
            newest_updated_at=None,
            slot=SLOT,
            created_at=SLOT,
        ),
    )
    return path


ROWS = [["1", "alice", "a@x", "d", "customer", "u"], ["2", "bob\nline", "b@x", "d", "seller", "u"]]


def test_verify_accepts_an_untouched_export(tmp_path: Path) -> None:
    path = write_export(tmp_path, ROWS)
    assert verify_export(path).rows == 2


def test_verify_detects_a_modified_byte(tmp_path: Path) -> None:
    path = write_export(tmp_path, ROWS)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="sha256"):
        verify_export(path)


def test_verify_detects_a_row_count_that_disagrees(tmp_path: Path) -> None:
    path = write_export(tmp_path, ROWS)
    manifest = Manifest.model_validate_json(manifest_path(path).read_bytes())
    manifest_path(path).write_text(manifest.model_copy(update={"rows": 3}).model_dump_json())
    with pytest.raises(VerificationError, match="2 rows, the manifest says 3"):
        verify_export(path)


def test_verify_without_manifest_fails_clearly(tmp_path: Path) -> None:
    path = write_export(tmp_path, ROWS)
    manifest_path(path).unlink()
    with pytest.raises(VerificationError, match="manifest missing"):
        verify_export(path)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (SLOT, "2026-11-22 02:00:00+00:00"),
        (SLOT.replace(microsecond=120_000), "2026-11-22 02:00:00.12+00:00"),
        (SLOT.replace(microsecond=123_456), "2026-11-22 02:00:00.123456+00:00"),
        (SLOT.replace(microsecond=1), "2026-11-22 02:00:00.000001+00:00"),
        (
            datetime(2026, 11, 22, 3, 0, tzinfo=timezone(timedelta(hours=1))),
            "2026-11-22 02:00:00+00:00",
        ),
    ],
)
def test_timestamps_are_utc_in_postgresql_spelling(moment: datetime, expected: str) -> None:
    assert format_timestamp(moment) == expected
    assert datetime.fromisoformat(expected) == moment
