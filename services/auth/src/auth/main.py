"""The auth service, declared (``auth api|worker|migrate|replay-users``)."""

from pathlib import Path

from auth.app import create_app, make_signing_key
from auth.commands import replay_users_command
from auth.settings import SERVICE_NAME, Settings
from auth.worker import prune_task
from servicekit.service import Command, ServiceSpec, Task

SERVICE_DIR = Path(__file__).resolve().parents[2]


service = ServiceSpec(
    name=SERVICE_NAME,
    settings=Settings,
    service_dir=SERVICE_DIR,
    create_app=create_app,
    before_api=make_signing_key,
    # The worker relays the outbox beside the API's relays and prunes expired rows.
    tasks=[Task("prune", prune_task)],
    commands={
        "replay-users": Command("republish every user as user.updated", replay_users_command)
    },
)
main = service.main

if __name__ == "__main__":
    raise SystemExit(main())
