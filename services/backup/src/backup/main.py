"""The backup service, declared (``backup worker|migrate|run-now|verify``)."""

from pathlib import Path

from backup.commands import add_verify_arguments, run_now, verify
from backup.handlers import HANDLERS
from backup.settings import BACKUP_JOB, SERVICE_NAME, Settings
from backup.worker import open_exporter, restore_gauges_task
from servicekit.service import Command, Schedule, ServiceSpec, Task

SERVICE_DIR = Path(__file__).resolve().parents[2]


service = ServiceSpec(
    name=SERVICE_NAME,
    settings=Settings,
    service_dir=SERVICE_DIR,
    handlers=HANDLERS,
    schedules=[
        Schedule(BACKUP_JOB, cron=lambda s: s.backup_cron, grace=lambda s: s.catch_up_grace)
    ],
    resources=open_exporter,
    tasks=[Task("restore-export-gauges", restore_gauges_task, forever=False)],
    commands={
        "run-now": Command("export the user copy now", run_now),
        # Needs no settings: works on a copied-off file.
        "verify": Command(
            "check an export against its manifest",
            verify,
            arguments=add_verify_arguments,
            needs_settings=False,
        ),
    },
)
main = service.main

if __name__ == "__main__":
    raise SystemExit(main())
