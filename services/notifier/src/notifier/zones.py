"""IANA time zones and the wall-clock slots of a cron expression in one of them.

Slots are computed on naive local wall-clock times and only then placed in the zone, so a
daylight-saving change can neither skip nor repeat a slot: 06:00 exists once on every local day.
A slot in a spring-forward gap moves forward by the gap (02:30 becomes 03:30); one in the
repeated autumn hour is taken at its first occurrence.
"""

import functools
import zoneinfo
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_known_zone(name: str) -> bool:
    return name in _zone_names()


def local_slots(
    cron: str, zone_name: str, after: datetime, until: datetime
) -> list[tuple[datetime, date]]:
    """Slots of ``cron`` in local time with ``after < slot <= until``: (UTC instant, local date)."""
    zone = ZoneInfo(zone_name)
    # A margin on both sides covers wall-clock windows that fold back on themselves.
    start = after.astimezone(zone).replace(tzinfo=None) - timedelta(hours=3)
    stop = until.astimezone(zone).replace(tzinfo=None) + timedelta(hours=3)
    found: list[tuple[datetime, date]] = []
    schedule = croniter(cron, start)
    while True:
        naive: datetime = schedule.get_next(datetime)
        if naive > stop:
            return found
        instant = _place(naive, zone)
        if after < instant <= until:
            found.append((instant, naive.date()))


def _place(naive: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time (PEP 495 ``fold=0``, see the module doc)."""
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
