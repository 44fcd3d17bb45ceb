"""``notifier send-digest``: plan a date's digests and send them now."""

import argparse
import asyncio
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from notifier.service.planning import plan_digests
from notifier.settings import Settings
from notifier.worker import build_dispatcher, build_transport
from servicekit import create_engine, create_session_maker

if TYPE_CHECKING:
    pass


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


def add_digest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=date.fromisoformat, help="digest date, YYYY-MM-DD")


def send_digest_command(settings: Settings, args: argparse.Namespace) -> int:
    planned, settled = asyncio.run(send_digest(settings, args.date))
    print(f"planned {planned} digests, settled {settled} pending mails")
    return 0
