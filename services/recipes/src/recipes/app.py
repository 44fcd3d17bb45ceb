"""The recipes API: the FastAPI app ``recipes api`` serves."""

from fastapi import FastAPI

from recipes.api import internal_router, router
from recipes.settings import Settings
from servicekit import RevokedUsers, TokenVerifier, verifier_from_settings
from servicekit.fastapi import service_app


def create_app(
    settings: Settings | None = None,
    *,
    token_verifier: TokenVerifier | None = None,
    relay_outbox: bool = True,
) -> FastAPI:
    """The API; tests inject settings and a verifier, and may leave the outbox unrelayed."""
    settings = settings or Settings()

    app = service_app(settings, title="Recipes", prefix="/api/recipes", relay_outbox=relay_outbox)
    app.state.token_verifier = token_verifier or verifier_from_settings(settings)
    app.state.revoked_users = RevokedUsers(app)
    app.include_router(router)
    app.include_router(internal_router)
    return app
