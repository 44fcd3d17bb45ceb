"""Digest slots in local time: once per local day, also across daylight-saving changes."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from notifier.zones import is_known_zone, local_slots

DAILY_SIX = "0 6 * * *"
WEEKDAYS_SIX = "0 6 * * 1-5"


def slots(cron: str, zone: str, start: datetime, days: int) -> list[tuple[datetime, date]]:
    """All slots in ``days`` days, found by quarter-hour windows as the scanner does."""
    found: list[tuple[datetime, date]] = []
    step = timedelta(minutes=15)
    for n in range(days * 24 * 4):
        found += local_slots(cron, zone, start + n * step, start + (n + 1) * step)
    return found


@pytest.mark.parametrize(
    ("zone", "transition"),
    [
        ("Europe/Berlin", datetime(2026, 3, 29, tzinfo=UTC)),  # spring forward
        ("Europe/Berlin", datetime(2026, 10, 25, tzinfo=UTC)),  # fall back
        ("America/New_York", datetime(2026, 3, 8, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 11, 1, tzinfo=UTC)),
    ],
)
def test_six_am_happens_once_every_local_day_across_dst(zone: str, transition: datetime) -> None:
    found = slots(DAILY_SIX, zone, transition - timedelta(days=2), days=5)
    local_dates = [local for _, local in found]
    assert len(local_dates) == len(set(local_dates)) == 5
    for instant, local in found:
        wall = instant.astimezone(ZoneInfo(zone))
        assert (wall.date(), wall.hour, wall.minute) == (local, 6, 0)


def test_berlin_six_moves_in_utc_with_summer_time() -> None:
    before = local_slots(
        DAILY_SIX,
        "Europe/Berlin",
        datetime(2026, 3, 27, tzinfo=UTC),
        datetime(2026, 3, 28, tzinfo=UTC),
    )
    after = local_slots(
        DAILY_SIX,
        "Europe/Berlin",
        datetime(2026, 3, 30, tzinfo=UTC),
        datetime(2026, 3, 31, tzinfo=UTC),
    )
    assert [s.hour for s, _ in before] == [5]  # CET, UTC+1
    assert [s.hour for s, _ in after] == [4]  # CEST, UTC+2


def test_slot_in_the_spring_forward_gap_still_happens_once() -> None:
    found = slots("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, tzinfo=UTC), days=2)
    assert [local for _, local in found] == [date(2026, 3, 28), date(2026, 3, 29)]


def test_slot_in_the_repeated_hour_happens_once() -> None:
    found = slots("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, tzinfo=UTC), days=2)
    assert [local for _, local in found] == [date(2026, 10, 24), date(2026, 10, 25)]


def test_weekdays_only_in_local_time() -> None:
    # Monday 06:00 in Auckland is still Sunday in UTC.
    found = slots(WEEKDAYS_SIX, "Pacific/Auckland", datetime(2026, 11, 20, tzinfo=UTC), days=7)
    assert [local.isoweekday() for _, local in found] == [1, 2, 3, 4, 5]
    assert found[0][0].astimezone(UTC).isoweekday() == 7


def test_window_is_open_at_the_start_and_closed_at_the_end() -> None:
    six = datetime(2026, 11, 23, 6, tzinfo=UTC)
    assert local_slots(DAILY_SIX, "UTC", six - timedelta(minutes=15), six) == [(six, six.date())]
    assert local_slots(DAILY_SIX, "UTC", six, six + timedelta(minutes=15)) == []


@pytest.mark.parametrize(
    ("name", "known"),
    [("Europe/Berlin", True), ("UTC", True), ("Mars/Base", False), ("../etc", False)],
)
def test_known_zones(name: str, known: bool) -> None:
    assert is_known_zone(name) is known
