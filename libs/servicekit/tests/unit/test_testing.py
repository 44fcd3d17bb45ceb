"""The test toolkit itself: ``eventually``, ``metric_value`` and the names it exports."""

import importlib.metadata
import itertools

import pytest
from prometheus_client import Counter, Gauge

import servicekit.testing
from servicekit.testing import eventually, metric_value, wait_until

#: Metrics of this module only, so no other test moves them.
TOOLKIT_EVENTS = Counter(
    "toolkit_test_events", "Counted by the toolkit's own tests.", ["queue", "outcome"]
)
TOOLKIT_LEVEL = Gauge("toolkit_test_level", "Set by the toolkit's own tests.")


async def test_eventually_returns_what_an_async_check_found_once_it_holds() -> None:
    calls = itertools.count(1)

    async def third_call() -> str | None:
        return "found" if next(calls) >= 3 else None

    assert await eventually(third_call, within=5, interval=0.001) == "found"
    assert next(calls) == 4  # not called again once it held


async def test_eventually_takes_a_plain_check() -> None:
    calls = itertools.count(1)
    assert await eventually(lambda: next(calls) >= 2, within=5, interval=0.001) is True


async def test_eventually_fails_naming_what_it_waited_for() -> None:
    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for the relay"):
        await eventually(never, within=0.05, interval=0.01, what="the relay")


async def test_eventually_does_not_retry_a_check_that_raises() -> None:
    calls = itertools.count(1)

    def broken() -> bool:
        next(calls)
        raise ValueError("bad check")

    with pytest.raises(ValueError, match="bad check"):
        await eventually(broken, within=5)
    assert next(calls) == 2


def test_wait_until_blocks_until_the_check_returns_something() -> None:
    calls = itertools.count(1)
    assert wait_until(lambda: next(calls) >= 3 and "up", within=5, interval=0.001) == "up"
    assert next(calls) == 4


def test_wait_until_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for the container"):
        wait_until(lambda: False, within=0.05, interval=0.01, what="the container")


def test_metric_value_reads_the_sample_with_exactly_these_labels() -> None:
    TOOLKIT_EVENTS.labels("q.a", "handled").inc(3)
    TOOLKIT_EVENTS.labels("q.a", "duplicate").inc()
    TOOLKIT_EVENTS.labels("q.b", "handled").inc(5)
    assert metric_value("toolkit_test_events_total", queue="q.a", outcome="handled") == 3
    assert metric_value("toolkit_test_events_total", queue="q.a", outcome="duplicate") == 1
    assert metric_value("toolkit_test_events_total", queue="q.b", outcome="handled") == 5


def test_metric_value_is_zero_for_a_sample_not_yet_created() -> None:
    assert metric_value("toolkit_test_events_total", queue="q.none", outcome="handled") == 0


def test_metric_value_reads_an_unlabelled_gauge() -> None:
    TOOLKIT_LEVEL.set(2.5)
    assert metric_value("toolkit_test_level") == 2.5


def test_every_exported_name_is_importable_from_the_package() -> None:
    for name in servicekit.testing.__all__:
        assert getattr(servicekit.testing, name) is not None, name


def test_the_pytest_entry_point_names_the_plugin_module() -> None:
    [entry] = [
        entry
        for entry in importlib.metadata.entry_points(group="pytest11")
        if entry.name == "servicekit"
    ]
    assert entry.value == "servicekit.testing.plugin"
