"""Engine and sessions: every service talks to its own PostgreSQL through these.

The pool is fixed and fair, and checks nothing on checkout; the reasons, measured on the recipe
list under 64 connections (issue 9):

- No overflow (``max_overflow=0``): SQLAlchemy closes an overflow connection as soon as it is
  returned, so under steady load the pool kept opening and closing PostgreSQL sessions (~320 in
  10 s). ``pool_size`` is the most the engine holds; it opens them only as the load asks.
- Idle connections are closed (issue 15): the pool hands out the connection returned last, so
  under light load the same few are reused and the rest sit unused; one unused for
  ``idle_timeout`` seconds is closed at the next checkout (the outbox relay checks out every poll
  interval, so an idle process shrinks to what it uses). The pool still grows to ``pool_size``
  under load. The sizes are a budget: README, "Connection budget".
- First come, first served: SQLAlchemy's asyncio queue gives a returned connection to whoever
  asks next, so a request that has just arrived takes it ahead of one that has waited, and a
  waiter that loses the race goes to the back of the line (p50 50 ms, p99 2-3 s).
  ``FairAsyncQueuePool`` hands a returned connection straight to the longest waiter.
- No pre-ping: it cost a round trip on every checkout. A connection that PostgreSQL killed (a
  restart, ``pg_terminate_backend``) fails on its first statement with an ``OperationalError``
  that SQLAlchemy recognises as a disconnect: it discards that connection and marks every
  connection opened before it as stale, to be replaced at its next checkout. So a restart costs
  the requests that were using the pool at that moment one error each, which
  ``servicekit._errors`` answers as a retryable 503 (as it answers the database being down), and
  the next requests get new connections without a restart of the service.
"""

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import await_
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty, Full

from servicekit.defaults import DEFAULT_IDLE_TIMEOUT, DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT

SessionMaker = async_sessionmaker[AsyncSession]


class FairAsyncQueue(AsyncAdaptedQueue[Any]):
    """A queue of idle connections that hands a returned one to the longest waiter: nobody
    barges past.

    A returned connection is given to a waiter directly rather than left in the queue until the
    waiter wakes up, so the queue only holds items when nobody waits and ``get`` can take one
    without looking at the waiters. Idle items are taken last-in first-out and remember when
    they were put, so ``take_idle`` finds those nobody needed for a while at the bottom.
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._waiters: deque[asyncio.Future[Any]] = deque()
        #: (item, when it was put), oldest first; ``get`` takes from the end.
        self._idle: list[tuple[Any, float]] = []

    def empty(self) -> bool:
        return not self._idle

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._idle)

    def qsize(self) -> int:
        return len(self._idle)

    def put_nowait(self, item: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._idle.append((item, time.monotonic()))

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)  # never blocks: the pool never returns more than it took

    def get_nowait(self) -> Any:
        if not self._idle:
            raise Empty()
        return self._idle.pop()[0]

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return self.get_nowait()
        except Empty:
            if not block:
                raise
        return await_(self._wait(timeout))

    def take_idle(self, longer_than: float) -> list[Any]:
        """Remove and return the items put more than ``longer_than`` seconds ago."""
        cutoff = time.monotonic() - longer_than
        stale = 0
        while stale < len(self._idle) and self._idle[stale][1] <= cutoff:
            stale += 1
        taken = [item for item, _ in self._idle[:stale]]
        del self._idle[:stale]
        return taken

    async def _wait(self, timeout: float | None) -> Any:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except BaseException as exc:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if waiter.done() and not waiter.cancelled():
                # Given a connection but cancelled before taking it: pass it on, or it leaks.
                self.put_nowait(waiter.result())
            if isinstance(exc, TimeoutError):
                raise Empty() from exc
            raise


class FairAsyncQueuePool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio pool with a first-come-first-served wait for connections, closing
    connections left unused for ``idle_timeout`` seconds (``None``: never)."""

    _queue_class = FairAsyncQueue
    idle_timeout: float | None = None

    def _do_get(self) -> ConnectionPoolEntry:
        if self.idle_timeout is not None:
            queue = self._pool
            assert isinstance(queue, FairAsyncQueue)
            for record in queue.take_idle(self.idle_timeout):
                record.close()
                self._dec_overflow()
        return super()._do_get()

    def recreate(self) -> "FairAsyncQueuePool":
        pool = super().recreate()
        assert isinstance(pool, FairAsyncQueuePool)
        pool.idle_timeout = self.idle_timeout
        return pool


def create_engine(
    database_url: str,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
) -> AsyncEngine:
    """An async engine on psycopg 3; ``database_url`` uses the ``postgresql+psycopg`` scheme.

    ``pool_size`` is the most connections the engine holds; one unused for ``idle_timeout``
    seconds is closed.
    """
    engine = create_async_engine(
        database_url,
        poolclass=FairAsyncQueuePool,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
    )
    pool = engine.sync_engine.pool
    assert isinstance(pool, FairAsyncQueuePool)
    pool.idle_timeout = idle_timeout
    return engine


def create_session_maker(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def libpq_url(database_url: str) -> str:
    """The same URL in the form libpq and plain psycopg accept (no SQLAlchemy driver suffix)."""
    scheme, rest = database_url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else database_url
