"""The auth service's app factory and its command line: ``auth api|worker|migrate|replay-users``."""

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from auth.api import PREFIX, AuthComponents, router
from auth.keys import KeyRing, load_key_ring
from auth.passwords import Passwords
from auth.replay import replay_users
from auth.settings import SERVICE_NAME, Settings
from auth.signin import TokenIssuer, prune_expired
from auth.throttle import SignInThrottle
from servicekit.db import SessionMaker, create_engine, create_session_maker
from servicekit.health import Readiness
from servicekit.http import HTTP_TELEMETRY, install_http_basics
from servicekit.migrations import ensure_database, upgrade_database
from servicekit.runtime import Messaging, configure_observability, run_worker
from servicekit.serving import serve_api
from servicekit.tokens import TokenVerifier

SERVICE_DIR = Path(__file__).resolve().parents[2]
PRUNE_INTERVAL = 3600.0

logger = logging.getLogger(__name__)


def local_verifier(keys: KeyRing, settings: Settings) -> TokenVerifier:
    """The same verifier other services use, fed with this process's own JWK Set."""

    async def fetch() -> dict[str, Any]:
        return keys.jwks()

    return TokenVerifier(fetch, issuer=settings.jwt_issuer, audience=settings.jwt_audience)


def create_app(settings: Settings | None = None, *, keys: KeyRing | None = None) -> FastAPI:
    """The API app; its lifespan relays the outbox (the broker may be down meanwhile)."""
    settings = settings or Settings()
    keys = keys or load_key_ring(settings)
    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        idle_timeout=settings.database_idle_timeout,
    )
    session_maker = create_session_maker(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        messaging = Messaging(
            amqp_url=settings.amqp_url,
            database_url=settings.database_url,
            session_maker=session_maker,
            relay=True,
            poll_interval=settings.outbox_poll_interval,
        )
        # Not the broker: while it is away, writes wait in the outbox (servicekit.health).
        app.state.readiness = Readiness(engine=engine, liveness=messaging.liveness)
        await messaging.start()
        try:
            yield
        finally:
            await messaging.stop()
            await engine.dispose()

    app = FastAPI(
        title="Auth service",
        lifespan=lifespan,
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        telemetry=HTTP_TELEMETRY,
    )
    install_http_basics(app)
    app.state.engine = engine
    app.state.session_maker = session_maker
    app.state.token_verifier = local_verifier(keys, settings)
    app.state.auth = AuthComponents(
        passwords=Passwords(
            memory_cost=settings.argon2_memory_cost,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        ),
        issuer=TokenIssuer(
            keys=keys,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_lifetime=timedelta(seconds=settings.access_token_lifetime),
            refresh_lifetime=timedelta(seconds=settings.refresh_token_lifetime),
        ),
        throttle=SignInThrottle(
            per_account_and_address=settings.login_failures_per_account_and_address,
            per_address=settings.login_failures_per_address,
            per_username=settings.login_failures_per_username,
            window_seconds=settings.login_failure_window,
        ),
        keys=keys,
        trust_forwarded_for=settings.trust_forwarded_for,
    )
    app.include_router(router)
    return app


async def prune_forever(session_maker: SessionMaker, *, interval: float) -> None:
    """Delete expired refresh tokens and old sign-in failures, every ``interval`` seconds."""
    while True:
        try:
            async with session_maker() as session, session.begin():
                await prune_expired(session=session, now=datetime.now(UTC))
        except Exception:
            logger.warning("pruning expired tokens failed; retrying later", exc_info=True)
        await asyncio.sleep(interval)


async def _worker(settings: Settings) -> None:
    """Relay the outbox (beside the API's relays) and prune expired rows."""
    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        idle_timeout=settings.database_idle_timeout,
    )
    session_maker = create_session_maker(engine)
    messaging = Messaging(
        amqp_url=settings.amqp_url,
        database_url=settings.database_url,
        session_maker=session_maker,
        relay=True,
        poll_interval=settings.outbox_poll_interval,
    )
    messaging.spawn(prune_forever(session_maker, interval=PRUNE_INTERVAL), name="prune")
    try:
        await run_worker(
            messaging,
            Readiness(engine=engine, bus=messaging.bus),
            host=settings.health_host,
            port=settings.health_port,
        )
    finally:
        await engine.dispose()


async def _replay(settings: Settings) -> int:
    engine = create_engine(settings.database_url, pool_size=2)
    try:
        return await replay_users(create_session_maker(engine))
    finally:
        await engine.dispose()


def api_app() -> FastAPI:
    """The API as ``auth api`` serves it, built in each of its processes."""
    settings = Settings()
    configure_observability(SERVICE_NAME, log_level=settings.log_level, json_logs=settings.log_json)
    return create_app(settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="auth", description=__doc__)
    parser.add_argument(
        "command",
        choices=["api", "worker", "migrate", "replay-users"],
        help="api: serve HTTP; worker: relay the outbox; migrate: create/upgrade the database; "
        "replay-users: republish every user as user.updated",
    )
    args = parser.parse_args(argv)
    settings = Settings()
    configure_observability(SERVICE_NAME, log_level=settings.log_level, json_logs=settings.log_json)
    if args.command == "api":
        # Made (in development) before the processes start, so that they all load one key.
        load_key_ring(settings)
        serve_api(
            "auth.main:api_app",
            host=settings.api_host,
            port=settings.api_port,
            processes=settings.api_processes,
            log_level=settings.log_level,
        )
    elif args.command == "worker":
        asyncio.run(_worker(settings))
    elif args.command == "migrate":
        ensure_database(settings.database_url)
        upgrade_database(SERVICE_DIR, settings.database_url)
    else:
        count = asyncio.run(_replay(settings))
        print(f"queued {count} user.updated events")


if __name__ == "__main__":
    main()
