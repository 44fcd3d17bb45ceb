"""The auth service: its API and its declaration (``auth api|worker|migrate|replay-users``)."""

import argparse
import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from auth.api import PREFIX, AuthComponents, router
from auth.keys import KeyRing, load_key_ring
from auth.passwords import Passwords
from auth.service import replay_users
from auth.settings import SERVICE_NAME, Settings
from auth.signin import TokenIssuer, prune_expired
from auth.throttle import SignInThrottle
from servicekit.db import SessionMaker, create_engine, create_session_maker
from servicekit.http import HTTP_TELEMETRY, install_http_basics
from servicekit.runtime import api_lifespan
from servicekit.service import Command, ServiceSpec, Task, WorkerContext
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

    app = FastAPI(
        title="Auth service",
        lifespan=api_lifespan(settings, engine=engine),
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
            async with session_maker() as session:
                await prune_expired(session, now=datetime.now(UTC))
        except Exception:
            logger.warning("pruning expired tokens failed; retrying later", exc_info=True)
        await asyncio.sleep(interval)


async def prune_task(worker: WorkerContext[Settings]) -> None:
    await prune_forever(worker.session_maker, interval=PRUNE_INTERVAL)


async def _replay(settings: Settings) -> int:
    engine = create_engine(settings.database_url, pool_size=2)
    try:
        return await replay_users(create_session_maker(engine))
    finally:
        await engine.dispose()


def replay_users_command(settings: Settings, args: argparse.Namespace) -> int:
    count = asyncio.run(_replay(settings))
    print(f"queued {count} user.updated events")
    return 0


def make_signing_key(settings: Settings) -> None:
    """Made (in development) before the API processes start, so that they all load one key."""
    load_key_ring(settings)


service = ServiceSpec(
    name=SERVICE_NAME,
    settings=Settings,
    service_dir=SERVICE_DIR,
    create_app=create_app,
    before_api=make_signing_key,
    # The worker relays the outbox beside the API's relays and prunes expired rows.
    tasks=[Task("prune", prune_task)],
    commands={
        "replay-users": Command("republish every user as user.updated", replay_users_command)
    },
)
main = service.main

if __name__ == "__main__":
    raise SystemExit(main())
