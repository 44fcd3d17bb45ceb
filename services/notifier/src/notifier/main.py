"""The notifier service: its API, mail resources and declaration (``notifier api|worker|migrate|
send-digest``).

What only the API uses (the routes) is imported inside ``create_app``: ``send-digest`` is a short
command whose run time includes its start-up.
"""

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from notifier.dispatch import Dispatcher
from notifier.handlers import HANDLERS
from notifier.mail import MailComposer
from notifier.planning import plan_digests
from notifier.settings import DIGEST_SCAN_JOB, SERVICE_NAME, Settings
from notifier.transport import FileTransport, SmtpTransport, Transport
from notifier.unsubscribe import UnsubscribeTokens
from servicekit.db import SessionMaker, create_engine, create_session_maker
from servicekit.service import Command, Schedule, ServiceSpec, Task, WorkerContext

if TYPE_CHECKING:
    from fastapi import FastAPI

    from servicekit.tokens import TokenVerifier

SERVICE_DIR = Path(__file__).resolve().parents[2]
logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    token_verifier: "TokenVerifier | None" = None,
    relay_outbox: bool = True,
) -> "FastAPI":
    """The API; tests inject settings and a verifier, and may leave the outbox unrelayed."""
    from fastapi import FastAPI

    from notifier.api import router
    from servicekit.http import HTTP_TELEMETRY, install_http_basics
    from servicekit.revocation import RevokedUsers
    from servicekit.runtime import api_lifespan
    from servicekit.tokens import verifier_from_settings

    settings = settings or Settings()

    app = FastAPI(
        title="Notifications",
        version="1.0.0",
        lifespan=api_lifespan(settings, relay_outbox=relay_outbox),
        openapi_url="/api/notifications/openapi.json",
        docs_url="/api/notifications/docs",
        redoc_url=None,
        redirect_slashes=False,
        telemetry=HTTP_TELEMETRY,
    )
    app.state.settings = settings
    app.state.unsubscribe_tokens = UnsubscribeTokens(settings.unsubscribe_key)
    app.state.token_verifier = token_verifier or verifier_from_settings(settings)
    app.state.revoked_users = RevokedUsers(app)
    install_http_basics(app)
    app.include_router(router)
    return app


def build_transport(settings: Settings) -> Transport:
    """SMTP when a host is configured, else ``.eml`` files under ``<data_dir>/mail``."""
    if not settings.smtp_host:
        return FileTransport(settings.mail_dir)
    return SmtpTransport(
        host=settings.smtp_host,
        port=settings.smtp_port,
        connections=settings.smtp_connections,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value(),
        use_tls=settings.smtp_use_tls,
        start_tls=settings.smtp_start_tls,
        cert_bundle=settings.smtp_cert_bundle,
        timeout=settings.smtp_timeout,
    )


def build_dispatcher(
    session_maker: SessionMaker, settings: Settings, transport: Transport
) -> Dispatcher:
    composer = MailComposer(
        sender=settings.mail_from,
        public_base_url=settings.public_base_url,
        tokens=UnsubscribeTokens(settings.unsubscribe_key),
    )
    return Dispatcher(session_maker, transport, composer, settings)


@asynccontextmanager
async def open_mail(settings: Settings, session_maker: SessionMaker) -> AsyncIterator[list[object]]:
    """The worker's resources: the mail transport and the dispatcher that sends through it."""
    transport = build_transport(settings)
    try:
        yield [transport, build_dispatcher(session_maker, settings, transport)]
    finally:
        await transport.close()


async def dispatch_mail(worker: WorkerContext[Settings]) -> None:
    await worker.resources.get(Dispatcher).run()


async def send_digest(settings: Settings, digest_date: date | None = None) -> tuple[int, int]:
    """Plan the digest of ``digest_date`` (default: today in the default zone) for every
    subscribed user and send it now; returns (planned, settled). A user who already has that
    date's digest is not planned again."""
    now = datetime.now(UTC)
    digest_date = digest_date or now.astimezone(ZoneInfo(settings.default_timezone)).date()
    engine = create_engine(settings.database_url, pool_size=settings.smtp_connections + 1)
    session_maker = create_session_maker(engine)
    transport = build_transport(settings)
    try:
        async with session_maker() as session, session.begin():
            planned = await plan_digests(
                session,
                digest_date=digest_date,
                as_of=now,
                default_zone=settings.default_timezone,
            )
        dispatcher = build_dispatcher(session_maker, settings, transport)
        await dispatcher.recover_interrupted()
        settled = await dispatcher.send_pending()
        await dispatcher.refresh_due_gauge()
        return planned, settled
    finally:
        await transport.close()
        await engine.dispose()


def add_digest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=date.fromisoformat, help="digest date, YYYY-MM-DD")


def send_digest_command(settings: Settings, args: argparse.Namespace) -> int:
    planned, settled = asyncio.run(send_digest(settings, args.date))
    print(f"planned {planned} digests, settled {settled} pending mails")
    return 0


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
