"""App factory, lifespan and the ``notifier`` command (``api``, ``worker``, ``migrate``,
``send-digest``).

What only the API, the worker or ``migrate`` use (the routes, the bus, alembic) is imported
inside them: ``send-digest`` is a short command whose run time includes its start-up.
"""

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from notifier.mail.compose import MailComposer
from notifier.mail.dispatch import Dispatcher
from notifier.mail.transport import FileTransport, SmtpTransport, Transport
from notifier.mail.unsubscribe import UnsubscribeTokens
from notifier.service.planning import plan_digests
from notifier.settings import DIGEST_SCAN_JOB, SERVICE_NAME, Settings
from servicekit.db import SessionMaker, create_engine, create_session_maker
from servicekit.runtime import configure_observability

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


async def run_worker_process(settings: Settings) -> None:
    from notifier.handlers import build_consumer
    from servicekit.health import Readiness
    from servicekit.runtime import Messaging, run_worker
    from servicekit.ticks import TickEmitter

    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        idle_timeout=settings.database_idle_timeout,
    )
    session_maker = create_session_maker(engine)
    consumer = build_consumer(session_maker, settings)
    emitter = TickEmitter(
        session_maker,
        job=DIGEST_SCAN_JOB,
        cron=settings.scan_cron,
        producer=SERVICE_NAME,
        grace=settings.catch_up_grace,
    )
    messaging = Messaging(
        amqp_url=settings.amqp_url,
        database_url=settings.database_url,
        session_maker=session_maker,
        consumers=[consumer],
        emitters=[emitter],
        poll_interval=settings.outbox_poll_interval,
        inbox_retention=settings.inbox_retention,
    )
    transport = build_transport(settings)
    dispatcher = build_dispatcher(session_maker, settings, transport)
    messaging.spawn(dispatcher.run(), name="mail-dispatch")
    readiness = Readiness(engine=engine, bus=messaging.bus, consumers=[consumer])
    try:
        await run_worker(messaging, readiness, host=settings.health_host, port=settings.health_port)
    finally:
        await transport.close()
        await engine.dispose()


def migrate(settings: Settings) -> None:
    """Create and upgrade the database, then declare the worker's queue and its bindings.

    Not left to the worker alone: the exchange drops an event no queue is bound for yet, so a
    ``user.registered`` published before the worker's first start would get no welcome mail.
    """
    from notifier.handlers import build_consumer
    from servicekit.migrations import ensure_database, upgrade_database
    from servicekit.runtime import declare_queues

    ensure_database(settings.database_url)
    upgrade_database(SERVICE_DIR, settings.database_url)
    # Declaring needs no database: this engine is never connected.
    consumer = build_consumer(create_session_maker(create_engine(settings.database_url)), settings)
    asyncio.run(
        declare_queues(settings.amqp_url, [consumer], management_url=settings.amqp_management_url)
    )


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
                session=session,
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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="notifier", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("api", help="serve the notifications API")
    commands.add_parser("worker", help="consume events, plan and send mail, serve health")
    commands.add_parser("migrate", help="create the database if missing and migrate it")
    digest = commands.add_parser("send-digest", help="send a digest now (once per user and date)")
    digest.add_argument("--date", type=date.fromisoformat, help="digest date, YYYY-MM-DD")
    return root


def api_app() -> "FastAPI":
    """The API as ``notifier api`` serves it, built in each of its processes."""
    settings = Settings()
    configure_observability(SERVICE_NAME, log_level=settings.log_level, json_logs=settings.log_json)
    return create_app(settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings()
    configure_observability(SERVICE_NAME, log_level=settings.log_level, json_logs=settings.log_json)
    if args.command == "api":
        from servicekit.serving import serve_api

        serve_api(
            "notifier.main:api_app",
            host=settings.api_host,
            port=settings.api_port,
            processes=settings.api_processes,
            log_level=settings.log_level,
        )
    elif args.command == "worker":
        asyncio.run(run_worker_process(settings))
    elif args.command == "migrate":
        migrate(settings)
    else:
        planned, settled = asyncio.run(send_digest(settings, args.date))
        print(f"planned {planned} digests, settled {settled} pending mails")
    return 0


if __name__ == "__main__":
    sys.exit(main())
