"""The notifications API: the FastAPI app ``notifier api`` serves.

What only the API uses (the routes) is imported inside ``create_app``: ``send-digest`` is a short
command whose run time includes its start-up.
"""

from typing import TYPE_CHECKING

from notifier.mail.unsubscribe import UnsubscribeTokens
from notifier.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from servicekit.tokens import TokenVerifier


def create_app(
    settings: Settings | None = None,
    *,
    token_verifier: "TokenVerifier | None" = None,
    relay_outbox: bool = True,
) -> "FastAPI":
    """The API; tests inject settings and a verifier, and may leave the outbox unrelayed."""
    from fastapi import FastAPI

    from notifier.api import router
    from servicekit.http import HTTP_TELEMETRY, install_http_basics
    from servicekit.revocation import RevokedUsers
    from servicekit.runtime import api_lifespan
    from servicekit.tokens import verifier_from_settings

    settings = settings or Settings()

    app = FastAPI(
        title="Notifications",
        version="1.0.0",
        lifespan=api_lifespan(settings, relay_outbox=relay_outbox),
        openapi_url="/api/notifications/openapi.json",
        docs_url="/api/notifications/docs",
        redoc_url=None,
        redirect_slashes=False,
        telemetry=HTTP_TELEMETRY,
    )
    app.state.settings = settings
    app.state.unsubscribe_tokens = UnsubscribeTokens(settings.unsubscribe_key)
    app.state.token_verifier = token_verifier or verifier_from_settings(settings)
    app.state.revoked_users = RevokedUsers(app)
    install_http_basics(app)
    app.include_router(router)
    return app
