"""How a service is put together: one declaration, one command line (issue 19).

A service's ``main.py`` declares a ``ServiceSpec`` named ``service``: its name, settings class,
API factory, the table of events it consumes (event type to handler), the tick schedules it
emits, the resources its worker opens and the background tasks it runs, and any extra commands.
Everything else is the same for every service and lives here, once:

- ``<name> api``: the API (``<PREFIX>API_PROCESSES`` uvicorn processes), its outbox relayed;
- ``<name> worker``: the consumer of ``<name>.events`` built from the handler table, the tick
  emitters, the outbox relay, the background tasks, and the health/metrics server; readiness is
  the database, the broker and the consumer;
- ``<name> migrate``: create and upgrade the database, then declare the queue, its bindings
  (one per event type of the table), retry queues, dead-letter queue and policies. Not left to
  the worker alone: the exchange drops an event no queue is bound for yet, so events published
  before the worker's first start would be lost;
- the spec's own commands (``backup verify FILE``, ``notifier send-digest``...).

Handlers are plain functions ``async def on_x(ctx: EventContext, event: X)``; what they need
besides the transaction (an image pipeline, the settings) they take from the worker's resources
by type: ``ctx.resource(ImagePipeline)``. So the table is known without starting anything: a
test compares every spec's table with ``contracts.catalogue.EVENT_FLOWS``, and ``migrate``
declares the bindings without opening the resources.
"""

import argparse
import asyncio
import importlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from contracts import Event
from servicekit._consumer import Consumer, Handler, Resources
from servicekit._settings import ServiceSettings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

    from servicekit._db import SessionMaker
    from servicekit._health import Readiness
    from servicekit._runtime import Messaging
    from servicekit._ticks import TickEmitter

S = TypeVar("S", bound=ServiceSettings)


@dataclass(frozen=True)
class Schedule(Generic[S]):
    """A tick the worker emits on a cron schedule (``servicekit._ticks``), read from settings."""

    job: str
    cron: Callable[[S], str]
    #: How late a missed tick is still emitted after a restart.
    grace: Callable[[S], timedelta]


@dataclass(frozen=True)
class WorkerContext(Generic[S]):
    """What a running worker holds: given to background tasks."""

    settings: S
    engine: "AsyncEngine"
    session_maker: "SessionMaker"
    resources: Resources


@dataclass(frozen=True)
class Worker(Generic[S]):
    """An assembled worker (``ServiceSpec.open_worker``)."""

    messaging: "Messaging"
    readiness: "Readiness"
    context: WorkerContext[S]


@dataclass(frozen=True)
class Task(Generic[S]):
    """A background task of the worker; the process dies if it fails (``Messaging.spawn``)."""

    name: str
    run: Callable[[WorkerContext[S]], Coroutine[Any, Any, None]]
    #: False for a task that finishes its work and returns (its return is not a death).
    forever: bool = True


@dataclass(frozen=True)
class Command(Generic[S]):
    """An extra command: ``run`` returns the exit status."""

    help: str
    run: Callable[[S, argparse.Namespace], int]
    #: Adds the command's own arguments to its parser.
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    #: False for a command that must work without the service's settings (on a copied-off file).
    needs_settings: bool = True


#: The resources a worker opens: an async context manager yielding the objects handlers and
#: tasks look up by type (``Resources``).
ResourceFactory = Callable[[S, "SessionMaker"], AbstractAsyncContextManager[Sequence[object]]]


class ApiSettings(Protocol):
    api_host: str
    api_port: int
    api_processes: int | None


@dataclass(frozen=True, kw_only=True)
class ServiceSpec(Generic[S]):
    """A service, declared; ``main`` is its command line."""

    name: str
    settings: type[S]
    #: The folder with ``alembic.ini`` and ``migrations/``.
    service_dir: Path
    #: The API, for services that have one.
    create_app: Callable[[S], "FastAPI"] | None = None
    #: Runs once before the API processes start (e.g. making the development signing key).
    before_api: Callable[[S], None] | None = None
    handlers: Mapping[type[Event], Handler] = field(default_factory=dict)
    schedules: Sequence[Schedule[S]] = ()
    resources: ResourceFactory[S] | None = None
    tasks: Sequence[Task[S]] = ()
    commands: Mapping[str, Command[S]] = field(default_factory=dict)

    @property
    def app_module(self) -> str:
        """Where the spec lives: a service's package is named as the service, its spec is
        ``service`` in its ``main`` module."""
        return f"{self.name}.main"

    @property
    def queue(self) -> str:
        return f"{self.name}.events"

    @property
    def consumes(self) -> bool:
        return bool(self.handlers)

    @property
    def routing_keys(self) -> list[str]:
        """The event types the queue is bound for."""
        return sorted(event_type.event_type for event_type in self.handlers)

    def consumer(
        self, settings: S, session_maker: "SessionMaker", resources: Sequence[object] = ()
    ) -> Consumer:
        """The consumer of the service's queue, with its handler table."""
        consumer = Consumer(
            queue=self.queue,
            producer=self.name,
            session_maker=session_maker,
            retry_policy=settings.retry_policy,
            prefetch=settings.prefetch,
            batch_size=settings.consumer_batch_size,
            resources=Resources([settings, *resources]),
        )
        for event_type, handler in self.handlers.items():
            consumer.on(event_type, handler)
        return consumer

    @asynccontextmanager
    async def open_resources(
        self, settings: S, session_maker: "SessionMaker"
    ) -> AsyncIterator[Sequence[object]]:
        """The worker's resources (none for a service that declares no factory)."""
        if self.resources is None:
            yield ()
            return
        async with self.resources(settings, session_maker) as opened:
            yield opened

    # The commands every service has.

    def api_app(self) -> "FastAPI":
        """The API as ``<name> api`` serves it, built in each of its processes."""
        from servicekit._runtime import configure_observability

        assert self.create_app is not None, f"{self.name} has no API"
        settings = self.settings()
        configure_observability(
            self.name, log_level=settings.log_level, json_logs=settings.log_json
        )
        return self.create_app(settings)

    def serve_api(self, settings: S) -> None:
        from servicekit._serving import serve_api

        # Each API process imports the spec to build its app: by the rule, ``<name>.main:service``.
        if importlib.import_module(self.app_module).service.name != self.name:
            raise RuntimeError(f"{self.app_module}.service is not the spec of {self.name}")
        if self.before_api is not None:
            self.before_api(settings)
        api: ApiSettings = settings  # type: ignore[assignment]  # services with an API have them
        serve_api(
            f"{self.app_module}:service.api_app",
            host=api.api_host,
            port=api.api_port,
            processes=api.api_processes,
            log_level=settings.log_level,
        )

    def emitters(self, settings: S, session_maker: "SessionMaker") -> list["TickEmitter"]:
        """The tick emitters of the spec's schedules."""
        from servicekit._ticks import TickEmitter

        return [
            TickEmitter(
                session_maker,
                job=schedule.job,
                cron=schedule.cron(settings),
                producer=self.name,
                grace=schedule.grace(settings),
            )
            for schedule in self.schedules
        ]

    @asynccontextmanager
    async def open_worker(self, settings: S) -> AsyncIterator["Worker[S]"]:
        """The worker, assembled and not yet started: its engine and resources are closed when
        the block ends. ``run_worker`` starts it; tests start and stop its messaging directly."""
        from servicekit._db import create_engine, create_session_maker
        from servicekit._health import Readiness
        from servicekit._runtime import Messaging

        engine = create_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            idle_timeout=settings.database_idle_timeout,
        )
        session_maker = create_session_maker(engine)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            opened = await stack.enter_async_context(self.open_resources(settings, session_maker))
            consumers = [self.consumer(settings, session_maker, opened)] if self.consumes else []
            messaging = Messaging(
                amqp_url=settings.amqp_url,
                database_url=settings.database_url,
                session_maker=session_maker,
                consumers=consumers,
                emitters=self.emitters(settings, session_maker),
                poll_interval=settings.outbox_poll_interval,
                inbox_retention=settings.inbox_retention,
            )
            context = WorkerContext(settings, engine, session_maker, Resources([settings, *opened]))
            for task in self.tasks:
                messaging.spawn(task.run(context), name=task.name, forever=task.forever)
            readiness = Readiness(engine=engine, bus=messaging.bus, consumers=consumers)
            yield Worker(messaging, readiness, context)

    async def run_worker(self, settings: S) -> None:
        """Consume, emit ticks, relay the outbox, run the tasks; serve health until stopped."""
        from servicekit._runtime import run_worker

        async with self.open_worker(settings) as worker:
            await run_worker(
                worker.messaging,
                worker.readiness,
                host=settings.health_host,
                port=settings.health_port,
            )

    def migrate(self, settings: S) -> None:
        """Create and upgrade the database, then declare the queue (module docstring)."""
        from servicekit._db import create_engine, create_session_maker
        from servicekit._migrations import ensure_database, upgrade_database
        from servicekit._runtime import declare_queues

        ensure_database(settings.database_url)
        upgrade_database(self.service_dir, settings.database_url)
        if not self.consumes:
            return
        # Declaring needs no database and no resources: this engine is never connected.
        consumer = self.consumer(
            settings, create_session_maker(create_engine(settings.database_url))
        )
        asyncio.run(
            declare_queues(
                settings.amqp_url, [consumer], management_url=settings.amqp_management_url
            )
        )

    @property
    def command_names(self) -> list[str]:
        """What ``main`` accepts: the shared commands, then the spec's own."""
        shared = (
            ["api", "worker", "migrate"] if self.create_app is not None else ["worker", "migrate"]
        )
        return [*shared, *self.commands]

    def parser(self) -> argparse.ArgumentParser:
        root = argparse.ArgumentParser(prog=self.name, description=f"The {self.name} service.")
        commands = root.add_subparsers(dest="command", required=True)
        if self.create_app is not None:
            commands.add_parser("api", help="serve the HTTP API")
        commands.add_parser("worker", help=self._worker_help())
        commands.add_parser(
            "migrate", help="create/upgrade the database and declare the service's queues"
        )
        for name, command in self.commands.items():
            sub = commands.add_parser(name, help=command.help)
            if command.arguments is not None:
                command.arguments(sub)
        return root

    def _worker_help(self) -> str:
        parts = [f"consume {self.queue}"] if self.consumes else []
        parts += [f"emit {schedule.job} ticks" for schedule in self.schedules]
        parts += [task.name for task in self.tasks]
        return ", ".join([*parts, "relay the outbox, serve health and metrics"])

    def main(self, argv: Sequence[str] | None = None) -> int:
        """The service's command line; returns the exit status."""
        from servicekit._runtime import configure_observability

        args = self.parser().parse_args(argv)
        extra = self.commands.get(args.command)
        if extra is not None and not extra.needs_settings:
            # Defaults only, nothing read or checked: it runs where the service is not configured.
            return extra.run(cast(S, self.settings.model_construct()), args)
        settings = self.settings()
        configure_observability(
            self.name, log_level=settings.log_level, json_logs=settings.log_json
        )
        if extra is not None:
            return extra.run(settings, args)
        if args.command == "api":
            self.serve_api(settings)
        elif args.command == "worker":
            asyncio.run(self.run_worker(settings))
        else:
            self.migrate(settings)
        return 0
