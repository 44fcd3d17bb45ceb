"""Starting and stopping a service's messaging: bus, outbox relay, consumers, tick emitters.

The broker may be down when a service starts: the API still accepts writes (they wait in the
outbox) and the messaging side keeps trying to connect in the background. A worker's readiness
reports the broker and consumers until they are attached; an API's only its database.

Every background task runs forever until ``stop()``. One that ends otherwise (an exception, a
return, a cancellation nobody asked for) is logged at CRITICAL and recorded in ``liveness``:
``/healthz`` turns red, and ``run_worker`` stops serving and raises ``BackgroundTaskEnded``, so
the process exits non-zero and its supervisor (Kubernetes, compose, ``make up``'s status)
restarts or reports it. Issue 15 saw a worker whose consumer failed to start live on silently.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aio_pika
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import EXCHANGE_NAME
from servicekit._bus import Bus
from servicekit._consumer import Consumer
from servicekit._db import SessionMaker, create_engine, create_session_maker, libpq_url
from servicekit._health import Liveness, Readiness, health_app
from servicekit._inbox import prune_inbox_forever
from servicekit._logs import configure_logging
from servicekit._outbox import OutboxRelay
from servicekit._settings import ServiceSettings
from servicekit._ticks import TickEmitter
from servicekit._topology import BrokerAdmin, default_management_url, migrate_topology, vhost_of
from servicekit._tracing import configure_tracing
from servicekit.defaults import DEFAULT_INBOX_RETENTION, DEFAULT_OUTBOX_POLL_INTERVAL

logger = logging.getLogger(__name__)


def configure_observability(service: str, *, log_level: str, json_logs: bool = True) -> None:
    """Logs (JSON lines, or text for a terminal) and, if ``OTEL_*`` asks, tracing.

    Call it first in ``main()``, for the API and the worker alike; run uvicorn with
    ``log_config=None`` so its own lines come out in the same format.
    """
    configure_logging(service, level=log_level, json=json_logs)
    configure_tracing(service)


class Messaging:
    def __init__(
        self,
        *,
        amqp_url: str,
        database_url: str,
        session_maker: SessionMaker,
        consumers: Sequence[Consumer] = (),
        emitters: Sequence[TickEmitter] = (),
        relay: bool = True,
        poll_interval: float = DEFAULT_OUTBOX_POLL_INTERVAL,
        inbox_retention: float = DEFAULT_INBOX_RETENTION,
    ) -> None:
        self.bus = Bus(amqp_url)
        self._session_maker = session_maker
        self._inbox_retention = inbox_retention
        self.consumers = list(consumers)
        self._emitters = list(emitters)
        self.relay = (
            OutboxRelay(
                session_maker,
                self.bus,
                listen_url=libpq_url(database_url),
                poll_interval=poll_interval,
            )
            if relay
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.liveness = Liveness()

    async def start(self) -> None:
        # Without a relay, connecting and attaching the consumers is all this task has to do.
        self.spawn(self._connect_and_consume(), name="messaging", forever=self.relay is not None)
        for emitter in self._emitters:
            self.spawn(emitter.run(), name=f"tick-{emitter.job}")
        if self.consumers:
            pruning = prune_inbox_forever(self._session_maker, retention=self._inbox_retention)
            self.spawn(pruning, name="inbox-pruning")

    def spawn(
        self, work: Coroutine[Any, Any, None], *, name: str, forever: bool = True
    ) -> asyncio.Task[None]:
        """Run ``work`` until ``stop()``; if it fails (or ends, if ``forever``) the process dies."""
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(lambda done: self._task_done(done, forever=forever))
        self._tasks.append(task)
        return task

    def _task_done(self, task: asyncio.Task[None], *, forever: bool) -> None:
        if self._stopping:
            return
        if task.cancelled():
            reason, error = "cancelled", None
        else:
            error = task.exception()
            if error is None and not forever:
                return
            reason = f"{type(error).__name__}: {error}" if error else "returned"
        logger.critical(
            "background task %s ended: %s",
            task.get_name(),
            reason,
            exc_info=(type(error), error, error.__traceback__) if error else None,
        )
        self.liveness.task_ended(task.get_name(), reason)

    async def _connect_and_consume(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.bus.connect()
                break
            except Exception as exc:
                logger.warning("broker unreachable (%s); retrying in %.1fs", exc, delay)
                if self.relay is not None:
                    await self.relay.refresh_backlog_metrics()  # the backlog grows meanwhile
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        for consumer in self.consumers:
            await consumer.start(self.bus)
        if self.relay is not None:
            await self.relay.run()

    async def stop(self) -> None:
        self._stopping = True
        for consumer in self.consumers:
            with contextlib.suppress(Exception):
                await consumer.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.bus.close()


async def declare_queues(
    amqp_url: str, consumers: Sequence[Consumer], *, management_url: str | None = None
) -> None:
    """Bring the consumers' queues, delay queues, DLQs, bindings and policies up to date.

    Each service's ``migrate`` runs this, so that the queues exist before any service publishes
    (the exchange drops a message that no queue is bound for yet) and so that changed retry
    settings and queues of an earlier version are migrated (``servicekit._topology``). The
    management API (``management_url``, default: port 15672 of the AMQP host) sets the policies.
    """
    admin = BrokerAdmin(management_url or default_management_url(amqp_url), vhost_of(amqp_url))
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for consumer in consumers:
            await migrate_topology(
                connection,
                admin,
                EXCHANGE_NAME,
                consumer.queue,
                consumer.routing_keys,
                consumer.retry_policy,
            )


class BackgroundTaskEnded(RuntimeError):
    """A task that should have run until shutdown ended; the process must be restarted."""


async def run_worker(messaging: Messaging, readiness: Readiness, *, host: str, port: int) -> None:
    """Run consumers, relay and emitters, and serve health and metrics until SIGTERM/SIGINT.

    Raises ``BackgroundTaskEnded`` (the process exits non-zero) if a background task ends.
    """
    readiness.liveness = messaging.liveness
    server = uvicorn.Server(
        uvicorn.Config(
            health_app(readiness), host=host, port=port, log_level="warning", log_config=None
        )
    )

    def shut_down() -> None:
        server.should_exit = True

    messaging.liveness.on_task_ended(shut_down)
    await messaging.start()
    try:
        await server.serve()
    finally:
        await messaging.stop()
    if not messaging.liveness.alive:
        raise BackgroundTaskEnded(f"background tasks ended: {messaging.liveness.ended}")


def api_lifespan(
    settings: ServiceSettings, *, relay_outbox: bool = True, engine: AsyncEngine | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """An API's lifespan: engine and sessions on ``app.state``, its outbox relayed, readiness.

    Tests pass ``relay_outbox=False`` to inspect the outbox themselves. An app that needs its
    engine before start-up (auth's tests reach ``app.state`` without running the lifespan)
    passes it; the lifespan disposes of it at the end either way.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = engine or create_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            idle_timeout=settings.database_idle_timeout,
        )
        app.state.engine = running
        app.state.session_maker = session_maker = create_session_maker(running)
        messaging = None
        if relay_outbox:
            messaging = Messaging(
                amqp_url=settings.amqp_url,
                database_url=settings.database_url,
                session_maker=session_maker,
                poll_interval=settings.outbox_poll_interval,
            )
            await messaging.start()
        # Not the broker: while it is away, writes wait in the outbox (module docstring).
        app.state.readiness = Readiness(
            engine=running, liveness=messaging.liveness if messaging is not None else None
        )
        try:
            yield
        finally:
            if messaging is not None:
                await messaging.stop()
            await running.dispose()

    return lifespan
