"""Backup: the real export of 1,000,000 users against ``COPY (SELECT …) TO STDOUT`` into a file.

It reuses the export benchmark beside it (backup_export.py, also run alone): its seed
and its ``--measure`` mode, run in a fresh process per run. Peak memory is that process's
``VmHWM`` read from /proc while it runs, not its ``ru_maxrss``: on Linux a child's ``ru_maxrss``
starts at the high-water mark of the process that spawned it, so it reports the parent's size
whenever the parent is the larger. The database is the bench's own scratch database, migrated
with the backup service's migrations.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, Outcome, Row, Size, alternate, libpq, median, scratch_database

SERVICE_DIR = ROOT / "services" / "backup"
HELPER = Path(__file__).with_name("backup_export.py")
PEAK_RSS_GOAL_MB = 150
#: What profiling (pyinstrument on the export) showed limits the goal; printed when not met.
EXPORT_LIMIT = (
    "Both read COPY through psycopg one row at a time, most of either's time. On top of that"
    " the export runs count(*) and max(updated_at) for its manifest (~0.1 s per million rows),"
    " PostgreSQL evaluates the neutralising and timestamp expressions (~0.15 s of its CPU),"
    " and the CRLF rewrite, sha256 and writes take ~0.25 s in Python."
)


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def measure_in_child(variant: str, url: str, out: Path) -> dict[str, Any]:
    """The helper's ``--measure`` in a fresh process, its peak RSS sampled from /proc."""
    command = [sys.executable, str(HELPER), "--measure", variant]
    command += ["--database-url", url, "--out", str(out)]
    with tempfile.TemporaryFile("w+") as stdout:
        child = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, text=True)
        peak = 0
        while child.poll() is None:
            peak = max(peak, _vm_hwm_kib(child.pid) or 0)
            time.sleep(0.01)
        if child.returncode != 0:
            raise RuntimeError(f"{variant} failed: {child.stderr.read() if child.stderr else ''}")
        stdout.seek(0)
        result: dict[str, Any] = json.loads(stdout.read().strip().splitlines()[-1])
    result["vm_hwm_kib"] = peak
    return result


def backup(size: Size) -> Outcome:
    users = 100_000 if size.quick else 1_000_000
    # Imported here: it loads the backup service's models, which no other scenario may share.
    import backup_export as helper

    from servicekit import upgrade_database

    outcome = Outcome("backup")
    with scratch_database("backup") as database_url, tempfile.TemporaryDirectory() as tmp:
        upgrade_database(SERVICE_DIR, database_url)
        url = libpq(database_url)
        helper.seed(url, users)
        counter = iter(range(1000))

        def run(variant: str) -> dict[str, Any]:
            result = measure_in_child(variant, url, Path(tmp) / f"{next(counter)}")
            if result["rows"] != users:
                raise RuntimeError(f"{variant} wrote {result['rows']} rows, not {users}")
            return result

        ours, ceiling = alternate(lambda: run("export"), lambda: run("plain-copy"), size.rounds)
    rate_ours = median([r["rows"] / r["seconds"] for r in ours])
    rate_copy = median([r["rows"] / r["seconds"] for r in ceiling])
    # MB as the goal says (VmHWM is in KiB).
    rss_ours = max(r["vm_hwm_kib"] for r in ours) * 1024 / 1e6
    rss_copy = max(r["vm_hwm_kib"] for r in ceiling) * 1024 / 1e6
    outcome.rows = [
        Row(
            "backup",
            "rows/s",
            "rows/s",
            rate_ours,
            rate_copy,
            "≥ 0.7x ceiling",
            rate_ours / rate_copy >= 0.7,
            target=0.7,
            note=EXPORT_LIMIT,
        ),
        Row(
            "backup",
            "peak RSS",
            "MB",
            rss_ours,
            rss_copy,
            f"≤ {PEAK_RSS_GOAL_MB} MB",
            rss_ours <= PEAK_RSS_GOAL_MB,
        ),
    ]
    outcome.details = {
        "users": users,
        "rounds": size.rounds,
        "export_bytes": ours[0]["bytes"],
        "peak_rss": "VmHWM of the process that ran it (Python, psycopg and the backup package)",
        "ceiling": "COPY (SELECT the same columns) TO STDOUT (FORMAT csv) into a file",
    }
    return outcome
