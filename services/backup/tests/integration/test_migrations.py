"""Migrations run by several replicas at once (init containers of a rollout) all succeed."""

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg

from backup.db import libpq_url

SERVICE_DIR = Path(__file__).resolve().parents[2]
UPGRADE = (
    "import sys, pathlib; from servicekit._migrations import upgrade_database as u; "
    "u(pathlib.Path(sys.argv[1]), sys.argv[2])"
)


def test_concurrent_upgrades_of_a_new_database_all_succeed(
    make_database: Callable[[str], str],
) -> None:
    url = make_database("backup_race")
    # Processes, as replicas are: alembic's migration context is one per process.
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADE, str(SERVICE_DIR), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, "\n".join(outputs)
    with psycopg.connect(libpq_url(url)) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert len(versions) == 1
