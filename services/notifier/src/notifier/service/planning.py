"""Which digests are due: one pending delivery row per subscribed user and local digest date.

The worker's tick emitter sends a ``digest-scan`` tick every quarter of an hour (UTC). Each scan
looks at the interval since the previous scan (at most ``catch_up_grace`` back, which is how
missed slots are caught up after downtime) and, for each time zone its users live in, finds the
local slots of ``digest_cron`` inside it. The digest date is the local date of the slot. Rows are
inserted with ``ON CONFLICT DO NOTHING`` on (user, digest date): a tick delivered twice, two
replicas, or a manual run on the same date never plan a second digest.
"""

import logging
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from notifier.models import DigestScan
from notifier.settings import Settings
from notifier.zones import local_slots

logger = logging.getLogger(__name__)

#: Users who want a digest now; ``:default_zone`` stands for users who chose no zone.
_SUBSCRIBED = """
    FROM recipients r LEFT JOIN preferences p ON p.user_id = r.user_id
    WHERE r.active AND NOT r.deleted AND NOT r.bouncing AND r.email IS NOT NULL
      AND coalesce(p.daily_digest, true)
"""

_PLAN = text(
    "INSERT INTO deliveries (kind, user_id, digest_date, as_of, status, attempts, created_at)"
    " SELECT 'digest', r.user_id, :digest_date, :as_of, 'pending', 0, now()"
    + _SUBSCRIBED
    + " AND (CAST(:zone AS text) IS NULL OR coalesce(p.timezone, :default_zone) = :zone)"
    " ON CONFLICT (user_id, digest_date) WHERE kind = 'digest' DO NOTHING"
)

_ZONES = text("SELECT DISTINCT coalesce(p.timezone, :default_zone)" + _SUBSCRIBED)


@dataclass(frozen=True)
class DueDigest:
    zone: str
    digest_date: date
    slot: datetime


async def plan_digests(
    *,
    session: AsyncSession,
    digest_date: date,
    as_of: datetime,
    default_zone: str,
    zone: str | None = None,
) -> int:
    """Plan the digest of ``digest_date`` for subscribed users (of ``zone``, or all)."""
    result = await session.execute(
        _PLAN,
        {"digest_date": digest_date, "as_of": as_of, "zone": zone, "default_zone": default_zone},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def due_digests(
    *, session: AsyncSession, after: datetime, until: datetime, settings: Settings
) -> list[DueDigest]:
    """The (zone, local date) digests whose slot lies in ``(after, until]``."""
    zones = (await session.scalars(_ZONES, {"default_zone": settings.default_timezone})).all()
    return [
        DueDigest(zone=zone, digest_date=local_date, slot=slot)
        for zone in sorted(zones)
        for slot, local_date in local_slots(settings.digest_cron, zone, after, until)
    ]


async def scan_for_digests(
    *, session: AsyncSession, scan_slot: datetime, settings: Settings
) -> int:
    """Plan every digest that came due since the previous scan; returns how many rows."""
    claimed = await session.scalar(
        insert(DigestScan)
        .values(slot=scan_slot)
        .on_conflict_do_nothing()
        .returning(col(DigestScan.slot))
    )
    if claimed is None:
        return 0  # this slot was scanned already (another replica, a redelivered tick)
    previous = await session.scalar(
        select(func.max(col(DigestScan.slot))).where(col(DigestScan.slot) < scan_slot)
    )
    after = scan_slot - settings.catch_up_grace
    if previous is not None and previous > after:
        after = previous
    planned = 0
    for due in await due_digests(session=session, after=after, until=scan_slot, settings=settings):
        count = await plan_digests(
            session=session,
            digest_date=due.digest_date,
            as_of=due.slot,
            default_zone=settings.default_timezone,
            zone=due.zone,
        )
        logger.info("planned %d digests for %s in %s", count, due.digest_date, due.zone)
        planned += count
    await session.execute(
        update(DigestScan).where(col(DigestScan.slot) == scan_slot).values(digests_planned=planned)
    )
    return planned
