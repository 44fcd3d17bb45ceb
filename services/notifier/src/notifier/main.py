"""The notifier service, declared (``notifier api|worker|migrate|send-digest``)."""

from pathlib import Path

from notifier.app import create_app
from notifier.commands import add_digest_arguments, send_digest_command
from notifier.handlers import HANDLERS
from notifier.settings import DIGEST_SCAN_JOB, SERVICE_NAME, Settings
from notifier.worker import dispatch_mail, open_mail
from servicekit.service import Command, Schedule, ServiceSpec, Task

SERVICE_DIR = Path(__file__).resolve().parents[2]


service = ServiceSpec(
    name=SERVICE_NAME,
    settings=Settings,
    service_dir=SERVICE_DIR,
    create_app=create_app,
    handlers=HANDLERS,
    schedules=[
        Schedule(DIGEST_SCAN_JOB, cron=lambda s: s.scan_cron, grace=lambda s: s.catch_up_grace)
    ],
    resources=open_mail,
    tasks=[Task("mail-dispatch", dispatch_mail)],
    commands={
        "send-digest": Command(
            "send a digest now (once per user and date)",
            send_digest_command,
            arguments=add_digest_arguments,
        )
    },
)
main = service.main

if __name__ == "__main__":
    raise SystemExit(main())
