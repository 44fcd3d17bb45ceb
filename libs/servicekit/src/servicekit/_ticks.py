"""The cron tick emitter: one ``schedule.tick`` per job and slot, whatever the replica count.

Every emitter computes the latest slot of its cron expression; inserting ``(job, slot)`` with
``ON CONFLICT DO NOTHING`` decides which replica emits it, and the tick goes out through the
outbox with an event id derived from job and slot, so even a duplicate publish is one event for
the inboxes. After downtime only the latest missed slot is caught up, and only inside the grace
window: a backup that is a week late should still run, a 6 AM email that is ten hours late should
not.
"""

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col

from contracts import ScheduleTick
from servicekit._db import SessionMaker
from servicekit._outbox import add_event
from servicekit._tables import ScheduledTick

logger = logging.getLogger(__name__)

_TICK_NAMESPACE = uuid.UUID("6f1d3c3e-2b7a-4f8e-9a51-1c0f2d7e9b44")


def tick_event_id(job: str, slot: datetime) -> uuid.UUID:
    return uuid.uuid5(_TICK_NAMESPACE, f"{job}@{slot.astimezone(UTC).isoformat()}")


class TickEmitter:
    def __init__(
        self,
        session_maker: SessionMaker,
        *,
        job: str,
        cron: str,
        producer: str,
        grace: timedelta,
        timezone: str = "UTC",
    ) -> None:
        if not croniter.is_valid(cron):
            raise ValueError(f"invalid cron expression: {cron!r}")
        self._session_maker = session_maker
        self.job = job
        self.cron = cron
        self._producer = producer
        self._grace = grace
        self._zone = ZoneInfo(timezone)

    def latest_slot(self, now: datetime) -> datetime:
        """The most recent slot at or before ``now``."""
        local = now.astimezone(self._zone) + timedelta(microseconds=1)
        slot: datetime = croniter(self.cron, local).get_prev(datetime)
        return slot.astimezone(UTC)

    def next_slot(self, now: datetime) -> datetime:
        slot: datetime = croniter(self.cron, now.astimezone(self._zone)).get_next(datetime)
        return slot.astimezone(UTC)

    async def emit_due(self, now: datetime | None = None) -> ScheduleTick | None:
        """Emit the latest slot if it is inside the grace window and nobody emitted it yet."""
        now = now or datetime.now(UTC)
        slot = self.latest_slot(now)
        if now - slot > self._grace:
            return None
        tick = ScheduleTick(job=self.job, slot=slot, cron=self.cron)
        async with self._session_maker() as session, session.begin():
            inserted = await session.scalar(
                insert(ScheduledTick)
                .values(job=self.job, slot=slot)
                .on_conflict_do_nothing()
                .returning(col(ScheduledTick.job))
            )
            if inserted is None:
                return None
            await add_event(
                session, tick, producer=self._producer, event_id=tick_event_id(self.job, slot)
            )
        logger.info("emitted tick %s for slot %s", self.job, slot.isoformat())
        return tick

    async def run(self, *, max_sleep: float = 60.0) -> None:
        """Emit due slots forever; wakes at least every ``max_sleep`` seconds."""
        while True:
            try:
                await self.emit_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("tick emitter %s failed; retrying", self.job, exc_info=True)
            now = datetime.now(UTC)
            wait = (self.next_slot(now) - now).total_seconds()
            await asyncio.sleep(min(max(wait, 0.05), max_sleep))
