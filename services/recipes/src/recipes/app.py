"""The recipes API: the FastAPI app ``recipes api`` serves."""

from fastapi import FastAPI

from recipes.api import internal_router, router
from recipes.settings import Settings
from servicekit.http import HTTP_TELEMETRY, install_http_basics
from servicekit.revocation import RevokedUsers
from servicekit.runtime import api_lifespan
from servicekit.tokens import TokenVerifier, verifier_from_settings


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
