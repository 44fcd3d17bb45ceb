"""The notifications API: the FastAPI app ``notifier api`` serves.

What only the API uses (the routes) is imported inside ``create_app``: ``send-digest`` is a short
command whose run time includes its start-up.
"""

from typing import TYPE_CHECKING

from notifier.mail.unsubscribe import UnsubscribeTokens
from notifier.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from servicekit import TokenVerifier


def create_app(
    settings: Settings | None = None,
    *,
    token_verifier: "TokenVerifier | None" = None,
    relay_outbox: bool = True,
) -> "FastAPI":
    """The API; tests inject settings and a verifier, and may leave the outbox unrelayed."""
    from notifier.api import router
    from servicekit import RevokedUsers, verifier_from_settings
    from servicekit.fastapi import service_app

    settings = settings or Settings()

    app = service_app(
        settings, title="Notifications", prefix="/api/notifications", relay_outbox=relay_outbox
    )
    app.state.unsubscribe_tokens = UnsubscribeTokens(settings.unsubscribe_key)
    app.state.token_verifier = token_verifier or verifier_from_settings(settings)
    app.state.revoked_users = RevokedUsers(app)
    app.include_router(router)
    return app
