"""The auth API: the FastAPI app ``auth api`` serves, with its keys, passwords and throttle."""

from datetime import timedelta
from typing import Any

from fastapi import FastAPI

from auth.api import PREFIX, AuthComponents, router
from auth.keys import KeyRing, load_key_ring
from auth.passwords import Passwords
from auth.settings import Settings
from auth.signin import TokenIssuer
from auth.throttle import SignInThrottle
from servicekit import TokenVerifier, create_engine, create_session_maker
from servicekit.fastapi import service_app


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

    # Redirecting slashes as FastAPI does by default: auth's routes add the slash-less twin
    # only for paths the original declared with one (servicekit.fastapi.slash_tolerant_routes).
    app = service_app(
        settings, title="Auth service", prefix=PREFIX, engine=engine, redirect_slashes=True
    )
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


def make_signing_key(settings: Settings) -> None:
    """Made (in development) before the API processes start, so that they all load one key."""
    load_key_ring(settings)
