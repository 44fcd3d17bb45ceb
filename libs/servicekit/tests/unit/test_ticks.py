from datetime import UTC, datetime, timedelta

import pytest

from servicekit._ticks import TickEmitter, tick_event_id


def emitter(cron: str = "0 6 * * 1-5", zone: str = "UTC") -> TickEmitter:
    return TickEmitter(
        None,  # type: ignore[arg-type]  # slot arithmetic needs no database
        job="digest",
        cron=cron,
        producer="t",
        grace=timedelta(hours=1),
        timezone=zone,
    )


def test_latest_slot_includes_the_exact_instant() -> None:
    monday_six = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    assert emitter().latest_slot(monday_six) == monday_six
    assert emitter().latest_slot(monday_six + timedelta(minutes=5)) == monday_six


def test_weekend_falls_back_to_friday() -> None:
    saturday = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    assert emitter().latest_slot(saturday) == datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def test_slots_follow_the_configured_zone() -> None:
    slot = emitter(zone="Europe/Berlin").latest_slot(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    assert slot == datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 06:00 CET


def test_event_id_is_deterministic_per_job_and_slot() -> None:
    slot = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    assert tick_event_id("a", slot) == tick_event_id("a", slot)
    assert tick_event_id("a", slot) != tick_event_id("b", slot)
    assert tick_event_id("a", slot) != tick_event_id("a", slot + timedelta(days=1))


def test_invalid_cron_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid cron"):
        emitter(cron="every morning")
