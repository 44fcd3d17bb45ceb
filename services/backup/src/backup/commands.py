"""``backup run-now`` and ``backup verify FILE``."""

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from backup.csvfile import VerificationError, verify_export
from backup.exports import ExportError
from backup.settings import Settings
from backup.worker import build_exporter


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
