"""App factory, lifespan and the ``recipes`` command (``api``, ``worker``, ``migrate``)."""

import argparse
import asyncio
from pathlib import Path

from fastapi import FastAPI

from recipes.api import internal_router, router
from recipes.db import SessionMaker, create_engine, create_session_maker
from recipes.handlers import build_consumer
from recipes.settings import SERVICE_NAME, Settings
from servicekit.consumer import Consumer
from servicekit.health import Readiness
from servicekit.http import HTTP_TELEMETRY, install_http_basics
from servicekit.migrations import ensure_database, upgrade_database
from servicekit.revocation import RevokedUsers
from servicekit.runtime import (
    Messaging,
    api_lifespan,
    configure_observability,
    declare_queues,
    run_worker,
)
from servicekit.serving import serve_api
from servicekit.tokens import TokenVerifier, verifier_from_settings

SERVICE_DIR = Path(__file__).resolve().parents[2]


def create_app(
    settings: Settings | None = None,
    *,
    token_verifier: TokenVerifier | None = None,
    relay_outbox: bool = True,
) -> FastAPI:
    """The API; tests inject settings and a verifier, and may leave the outbox unrelayed."""
    settings = settings or Settings()

    app = FastAPI(
        title="Recipes",
        version="1.0.0",
        lifespan=api_lifespan(settings, relay_outbox=relay_outbox),
        openapi_url="/api/recipes/openapi.json",
        docs_url="/api/recipes/docs",
        redoc_url=None,
        redirect_slashes=False,
        telemetry=HTTP_TELEMETRY,
    )
    app.state.settings = settings
    app.state.token_verifier = token_verifier or verifier_from_settings(settings)
    app.state.revoked_users = RevokedUsers(app)
    install_http_basics(app)
    app.include_router(router)
    app.include_router(internal_router)
    return app


def build_worker_consumer(settings: Settings, session_maker: SessionMaker) -> Consumer:
    """The consumer of ``recipes.events``, as the worker runs it and ``migrate`` declares it."""
    return build_consumer(
        session_maker,
        retry_policy=settings.retry_policy,
        prefetch=settings.prefetch,
        batch_size=settings.consumer_batch_size,
    )


def build_messaging(settings: Settings) -> tuple[Messaging, Readiness]:
    """The worker: consumers of ``recipes.events`` and an outbox relay."""
    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        idle_timeout=settings.database_idle_timeout,
    )
    session_maker = create_session_maker(engine)
    consumer = build_worker_consumer(settings, session_maker)
    messaging = Messaging(
        amqp_url=settings.amqp_url,
        database_url=settings.database_url,
        session_maker=session_maker,
        consumers=[consumer],
        poll_interval=settings.outbox_poll_interval,
        inbox_retention=settings.inbox_retention,
    )
    return messaging, Readiness(engine=engine, bus=messaging.bus, consumers=[consumer])


def migrate(settings: Settings) -> None:
    """Create and upgrade the database, then declare the worker's queue and its bindings.

    Not left to the worker alone: the exchange drops an event no queue is bound for yet, so
    events published before the worker's first start would be lost.
    """
    ensure_database(settings.database_url)
    upgrade_database(SERVICE_DIR, settings.database_url)
    # Declaring needs no database: this engine is never connected.
    session_maker = create_session_maker(create_engine(settings.database_url))
    consumer = build_worker_consumer(settings, session_maker)
    asyncio.run(
        declare_queues(settings.amqp_url, [consumer], management_url=settings.amqp_management_url)
    )


def api_app() -> FastAPI:
    """The API as ``recipes api`` serves it, built in each of its processes."""
    settings = Settings()
    configure_observability(SERVICE_NAME, log_level=settings.log_level, json_logs=settings.log_json)
    return create_app(settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="recipes", description=__doc__)
    parser.add_argument("command", choices=["api", "worker", "migrate"])
    args = parser.parse_args(argv)
    settings = Settings()
    configure_observability(SERVICE_NAME, log_level=settings.log_level, json_logs=settings.log_json)
    if args.command == "api":
        serve_api(
            "recipes.main:api_app",
            host=settings.api_host,
            port=settings.api_port,
            processes=settings.api_processes,
            log_level=settings.log_level,
        )
    elif args.command == "worker":
        messaging, readiness = build_messaging(settings)
        asyncio.run(
            run_worker(messaging, readiness, host=settings.health_host, port=settings.health_port)
        )
    else:
        migrate(settings)


if __name__ == "__main__":
    main()
