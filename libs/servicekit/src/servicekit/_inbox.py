"""Pruning the inbox: an event id is kept for ``inbox_retention`` seconds after it was applied.

The inbox makes a redelivery a no-op, so an id must outlive every way the same event can come
back: a redelivery after a lost ack or a consumer crash (seconds), the retry delays (the sum of
``<PREFIX>RETRY_DELAYS``, minutes), an outbox relay that crashed between publish and commit
(seconds). A dead letter replayed days later was never applied, so it needs no inbox row. The
default keeps ids for 7 days, far beyond all of these; ``ServiceSettings`` refuses a retention
shorter than a day or than the retry delays. Without pruning the table grew by one row per event
for ever (issue 15).

Each worker that consumes deletes old rows every ``PRUNE_INTERVAL`` seconds, in batches so that
no statement holds many locks or runs long; replicas pruning at once only share the work.
"""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from servicekit._db import SessionMaker
from servicekit._tables import InboxMessage

logger = logging.getLogger(__name__)

#: Seconds between prunings.
PRUNE_INTERVAL = 3600.0
#: Rows one statement deletes.
PRUNE_BATCH = 5000

_PRUNE = text(
    f"DELETE FROM {InboxMessage.__tablename__} WHERE ctid IN ("
    f" SELECT ctid FROM {InboxMessage.__tablename__} WHERE handled_at < :cutoff LIMIT :batch)"
)


async def prune_inbox(
    session_maker: SessionMaker, *, retention: float, now: datetime | None = None
) -> int:
    """Delete inbox rows applied more than ``retention`` seconds ago; returns how many."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=retention)
    total = 0
    while True:
        async with session_maker() as session, session.begin():
            result = await session.execute(_PRUNE, {"cutoff": cutoff, "batch": PRUNE_BATCH})
        deleted = int(getattr(result, "rowcount", 0) or 0)
        total += deleted
        if deleted < PRUNE_BATCH:
            return total


async def prune_inbox_forever(
    session_maker: SessionMaker, *, retention: float, interval: float = PRUNE_INTERVAL
) -> None:
    """``prune_inbox`` every ``interval`` seconds; a failure is logged and tried next time."""
    while True:
        try:
            deleted = await prune_inbox(session_maker, retention=retention)
            if deleted:
                logger.info("pruned %d inbox rows older than %.0f s", deleted, retention)
        except Exception:
            logger.warning("pruning the inbox failed; trying again later", exc_info=True)
        await asyncio.sleep(interval)
