"""Benchmark of the export (not a test): time, rows/s and peak memory for N users.

    uv run python bench/backup_export.py --users 100000

The ``backup`` scenario of ``make bench`` (scenario_backup.py) uses its seed and ``--measure``.

Creates a scratch database, migrates it, inserts N users with ``COPY FROM``, then measures, each
in a fresh process so that its peak RSS (``VmHWM`` in ``/proc/self/status``) is its own:

- ``export``: the real ``Exporter`` (COPY with neutralising SQL, CRLF rewrite, sha256, fsync,
  manifest);
- ``plain-copy``: a bare ``COPY (SELECT the same columns) TO STDOUT (FORMAT csv)`` into a file,
  the ceiling;
- ``cursor``: the rejected design, a server-side cursor with ``csv.writer`` in Python.

Peak RSS is reported beside the process's RSS before the export: if the export streams, the
difference does not grow with N. The scratch database is dropped at the end.
"""

import argparse
import contextlib
import csv
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from backup.csvfile import COLUMNS, format_timestamp, neutralise
from backup.exports import Exporter
from servicekit import libpq_url, upgrade_database

SERVICE_DIR = Path(__file__).resolve().parents[1] / "services" / "backup"
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
VARIANTS = ("export", "plain-copy", "cursor")
PLAIN_COPY = (
    "COPY (SELECT user_id, username, email, date_joined, role, updated_at FROM users"
    " WHERE deleted_at IS NULL ORDER BY user_id) TO STDOUT (FORMAT csv, HEADER)"
)


def peak_rss_mib() -> float:
    """This process's peak RSS (Linux).

    Not ``ru_maxrss``: on Linux it starts at the high-water mark of the process that spawned
    this one, so it shows the parent's size whenever the parent is the larger.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def seed(url: str, users: int) -> None:
    """Insert ``users`` live users; one in 50 has a formula-like username."""
    start = datetime(2020, 1, 1, tzinfo=UTC)
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        columns = "user_id, username, email, role, is_active, date_joined, updated_at, version"
        with cursor.copy(f"COPY users ({columns}) FROM STDIN") as copy:
            for n in range(1, users + 1):
                name = f"=cmd{n}" if n % 50 == 0 else f"user{n}"
                joined = start + timedelta(seconds=n * 37)
                copy.write_row(
                    (n, name, f"user{n}@example.com", "customer", True, joined, joined, 1)
                )
        cursor.execute("ANALYZE users")


def measure(variant: str, url: str, out: Path) -> dict[str, Any]:
    """Run one variant in this process and describe it."""
    out.mkdir(parents=True, exist_ok=True)
    baseline = peak_rss_mib()
    started = time.perf_counter()
    if variant == "export":
        exporter = Exporter(database_url=url, directory=out, keep_last=8)
        result = exporter.export_slot(datetime.now(UTC).replace(microsecond=0), trigger="bench")
        rows, path = result.manifest.rows, result.path
    elif variant == "plain-copy":
        path = out / "plain.csv"
        with psycopg.connect(url) as conn, conn.cursor() as cursor, path.open("wb") as file:
            with cursor.copy(PLAIN_COPY) as copy:
                for chunk in copy:
                    file.write(chunk)
            rows = cursor.rowcount
    else:
        path = out / "cursor.csv"
        rows = write_with_cursor(url, path)
    seconds = time.perf_counter() - started
    return {
        "variant": variant,
        "rows": rows,
        "seconds": seconds,
        "bytes": path.stat().st_size,
        "rss_before_mib": baseline,
        "peak_rss_mib": peak_rss_mib(),
    }


def write_with_cursor(url: str, path: Path) -> int:
    rows = 0
    with (
        psycopg.connect(url) as conn,
        conn.cursor(name="export") as cursor,
        path.open("w", encoding="utf-8", newline="") as file,
    ):
        cursor.itersize = 10_000
        cursor.execute(
            "SELECT user_id, username, email, date_joined, role, updated_at FROM users"
            " WHERE deleted_at IS NULL ORDER BY user_id"
        )
        writer = csv.writer(file, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for user_id, username, email, joined, role, updated in cursor:
            writer.writerow(
                (
                    user_id,
                    neutralise(username),
                    neutralise(email),
                    format_timestamp(joined),
                    role,
                    format_timestamp(updated),
                )
            )
            rows += 1
    return rows


def run_variant(variant: str, url: str, out: Path) -> dict[str, Any]:
    """One variant in a child process: its peak RSS is not polluted by the others."""
    child = subprocess.run(
        [sys.executable, __file__, "--measure", variant, "--database-url", url, "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(child.stdout)
    return result


@contextlib.contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A new database beside ``admin_url``'s (same server), dropped afterwards."""
    name = f"backup_bench_{uuid.uuid4().hex[:8]}"
    admin = libpq_url(admin_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def report(results: list[dict[str, Any]]) -> None:
    plain = next(r for r in results if r["variant"] == "plain-copy")
    print(
        f"{'variant':<11} {'rows':>9} {'seconds':>8} {'rows/s':>10} {'MiB out':>8}"
        f" {'RSS before':>10} {'peak RSS':>9} {'vs plain':>8}"
    )
    for r in results:
        print(
            f"{r['variant']:<11} {r['rows']:>9} {r['seconds']:>8.2f}"
            f" {r['rows'] / r['seconds']:>10,.0f} {r['bytes'] / 2**20:>8.1f}"
            f" {r['rss_before_mib']:>8.1f}Mi {r['peak_rss_mib']:>7.1f}Mi"
            f" {r['seconds'] / plain['seconds']:>7.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="a database to create the scratch")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--measure", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # child process
        print(json.dumps(measure(args.measure, args.database_url, args.out)))
        return
    with scratch_database(args.admin_url) as database_url:
        upgrade_database(SERVICE_DIR, database_url)
        url = libpq_url(database_url)
        started = time.perf_counter()
        seed(url, args.users)
        print(f"seeded {args.users:,} users in {time.perf_counter() - started:.1f}s", flush=True)
        with tempfile.TemporaryDirectory(prefix="backup-bench-") as out:
            results = [run_variant(v, url, Path(out) / v) for v in args.variants]
    report(results)


if __name__ == "__main__":
    main()
