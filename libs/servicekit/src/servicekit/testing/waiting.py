"""Waiting for what happens in the background: one ``eventually`` (async tests: a consumer, a
relay) and its blocking twin ``wait_until`` (sync tests: a process or a container starting)."""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

#: Long enough for a consumer's retries on a loaded machine; a passing check returns at once.
DEFAULT_WITHIN = 30.0


@overload
async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    within: float = DEFAULT_WITHIN,
    interval: float = 0.05,
    what: str = "the condition",
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T | None],
    *,
    within: float = DEFAULT_WITHIN,
    interval: float = 0.05,
    what: str = "the condition",
) -> T: ...


async def eventually(
    check: Callable[[], object],
    *,
    within: float = DEFAULT_WITHIN,
    interval: float = 0.05,
    what: str = "the condition",
) -> object:
    """Call ``check`` (plain or async) until it returns something truthy, and return that
    (so a check returning ``X | None`` gives an ``X``).

    Fails with an ``AssertionError`` naming ``what`` when ``within`` seconds pass first; an
    exception ``check`` raises is not retried.
    """
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)


#: Processes and containers take longer to start on a loaded machine than a consumer to retry.
DEFAULT_WITHIN_BLOCKING = 60.0


def wait_until(
    check: Callable[[], T | None],
    *,
    within: float = DEFAULT_WITHIN_BLOCKING,
    interval: float = 0.25,
    what: str = "the condition",
) -> T:
    """``eventually`` for synchronous tests: blocks between calls instead of awaiting."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(interval)
