"""Waiting for what happens in the background (a consumer, a relay): one ``eventually``."""

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
