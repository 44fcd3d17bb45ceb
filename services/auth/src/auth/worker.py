"""What the auth worker runs besides its outbox relay: pruning expired rows."""

import asyncio
import logging
from datetime import UTC, datetime

from auth.settings import Settings
from auth.signin import prune_expired
from servicekit import SessionMaker
from servicekit.service import WorkerContext

PRUNE_INTERVAL = 3600.0

logger = logging.getLogger(__name__)


async def prune_forever(session_maker: SessionMaker, *, interval: float) -> None:
    """Delete expired refresh tokens and old sign-in failures, every ``interval`` seconds."""
    while True:
        try:
            async with session_maker() as session, session.begin():
                await prune_expired(session=session, now=datetime.now(UTC))
        except Exception:
            logger.warning("pruning expired tokens failed; retrying later", exc_info=True)
        await asyncio.sleep(interval)


async def prune_task(worker: WorkerContext[Settings]) -> None:
    await prune_forever(worker.session_maker, interval=PRUNE_INTERVAL)
