"""Spacing mails out to stay under a provider's sending rate."""

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """At most ``per_second`` acquisitions a second across all workers (0: unlimited)."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._clock = clock
        self._sleep = sleep

    async def acquire(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self._interval  # reserve the slot before sleeping
        if start > now:
            await self._sleep(start - now)
