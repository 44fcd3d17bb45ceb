"""Routes of ``/api/notifications/``: preferences (with the user's token) and one-click
unsubscribe (RFC 8058: no login, the signed token says who).

A route that changes state owns its transaction (``async with session.begin()``); the use cases
of ``notifier.service`` never commit (see its docstring).
"""

from typing import Annotated

from fastapi import APIRouter, Query, Request

from notifier.mail.unsubscribe import InvalidUnsubscribeToken, UnsubscribeTokens
from notifier.schemas import PreferencesIn, PreferencesOut, UnsubscribeOut
from notifier.service import preferences
from notifier.settings import Settings
from servicekit import ApiError, CurrentPrincipal, error_responses
from servicekit.fastapi import SessionDep, app_state

router = APIRouter(prefix="/api/notifications", tags=["notifications"])

SettingsDep = Annotated[Settings, app_state("settings")]


@router.get("/preferences/", response_model=PreferencesOut, responses=error_responses(401))
async def read_preferences(
    session: SessionDep, principal: CurrentPrincipal, settings: SettingsDep
) -> PreferencesOut:
    return await preferences.get_preferences(
        session=session, user_id=principal.user_id, default_zone=settings.default_timezone
    )


@router.put("/preferences/", response_model=PreferencesOut, responses=error_responses(400, 401))
async def change_preferences(
    body: PreferencesIn, session: SessionDep, principal: CurrentPrincipal, settings: SettingsDep
) -> PreferencesOut:
    async with session.begin():
        return await preferences.update_preferences(
            session=session,
            user_id=principal.user_id,
            change=body,
            default_zone=settings.default_timezone,
        )


@router.post("/unsubscribe/", response_model=UnsubscribeOut, responses=error_responses(400))
async def unsubscribe(
    request: Request,
    session: SessionDep,
    token: Annotated[
        str | None, Query(description="The token of the List-Unsubscribe URL.")
    ] = None,
) -> UnsubscribeOut:
    """One click from the mail client: the token comes in the URL or as a form field."""
    if token is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        field = form.get("token")
        token = field if isinstance(field, str) else None
    tokens: UnsubscribeTokens = request.app.state.unsubscribe_tokens
    try:
        user_id = tokens.user_id(token or "")
    except InvalidUnsubscribeToken as exc:
        raise ApiError("Invalid unsubscribe token.", code="invalid_token") from exc
    async with session.begin():
        await preferences.unsubscribe(session=session, user_id=user_id)
    return UnsubscribeOut(detail="You will receive no more digests.", daily_digest=False)
