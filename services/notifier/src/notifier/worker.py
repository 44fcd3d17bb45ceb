"""What the notifier worker opens and runs besides its consumer: the mail transport and the
dispatcher that sends through it."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from notifier.mail.compose import MailComposer
from notifier.mail.dispatch import Dispatcher
from notifier.mail.transport import FileTransport, SmtpTransport, Transport
from notifier.mail.unsubscribe import UnsubscribeTokens
from notifier.settings import Settings
from servicekit import SessionMaker
from servicekit.service import WorkerContext

if TYPE_CHECKING:
    pass


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
