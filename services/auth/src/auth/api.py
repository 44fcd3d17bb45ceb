"""The auth HTTP API, compatible with the original backend's ``/api/auth/`` routes.

The transaction rule (every service's): a route owns its transaction, the consumer owns its
own, and a use case (``service``, ``signin``, the throttle) never commits, begins or rolls back;
it takes a keyword-only ``session``. A route that changes state wraps its use case in
``async with session.begin()``: an error raised inside rolls everything back.

Two outcomes must persist although the answer is an error, so their routes commit them before
raising it:

- sign-in: the throttle's reservation (the attempt counted as a failure) is committed in a
  transaction of its own *before* the password is checked, so concurrent guesses see it; a
  wrong password then answers 401 with the failure still counted (``auth.throttle``).
- refresh: a refresh token presented a second time revokes its whole family; the route commits
  the revocation, then answers 401 (``signin.RefreshTokenReused``).
"""

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from auth import service, signin
from auth.keys import KeyRing
from auth.passwords import Passwords
from auth.schemas import (
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    TokenRequest,
    UpdateMeRequest,
    UserOut,
)
from auth.service import FieldErrors
from auth.signin import TokenIssuer
from auth.throttle import SignInThrottle, client_address
from servicekit import CurrentPrincipal, FormBodyRoute, error_responses, field_errors
from servicekit.fastapi import SessionDep, app_state, slash_tolerant_routes

PREFIX = "/api/auth"


class FieldErrorRoute(FormBodyRoute):
    """Validation errors as a bare ``{"field": ["message"]}`` body, as the original backend.

    Bodies may be JSON or forms (``FormBodyRoute``), as DRF's default parsers allowed.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                if any(error.get("type") == "json_invalid" for error in exc.errors()):
                    body: dict[str, Any] = {"detail": "JSON parse error", "code": "parse_error"}
                else:
                    body = dict(field_errors(exc))
                return JSONResponse(body, status.HTTP_400_BAD_REQUEST)
            except FieldErrors as exc:
                return JSONResponse(exc.errors, status.HTTP_400_BAD_REQUEST)

        return handle


@dataclass(frozen=True)
class AuthComponents:
    """What the routes need besides a session; built once in ``create_app``."""

    passwords: Passwords
    issuer: TokenIssuer
    throttle: SignInThrottle
    keys: KeyRing
    trust_forwarded_for: bool


Components = Annotated[AuthComponents, app_state("auth")]

router = APIRouter(prefix=PREFIX, route_class=FieldErrorRoute, tags=["auth"])


#: Serves each path with and without its trailing slash (the documented form has it).
_routes = slash_tolerant_routes(router)


def _user_out(user: Any) -> UserOut:
    # No address is "" in the body, as Django's blank EmailField showed it.
    return UserOut(id=user.id, username=user.username, email=user.email or "", role=user.role)


@_routes(
    "/register/",
    methods=["POST"],
    status_code=201,
    response_model=UserOut,
    responses=error_responses(400),
)
async def register(body: RegisterRequest, session: SessionDep, auth: Components) -> UserOut:
    async with session.begin():
        user = await service.register(
            session=session,
            passwords=auth.passwords,
            username=body.username,
            email=body.email,
            password=body.password,
            role=body.role,
        )
    return _user_out(user)


@_routes(
    "/token/", methods=["POST"], response_model=TokenPair, responses=error_responses(400, 401, 429)
)
async def obtain_token(
    body: TokenRequest, request: Request, session: SessionDep, auth: Components
) -> TokenPair:
    address = client_address(request, trust_forwarded_for=auth.trust_forwarded_for)
    async with session.begin():  # committed before the password check, even if it fails
        reservation = await auth.throttle.reserve(
            session=session, username=body.username, address=address, now=datetime.now(UTC)
        )
    async with session.begin():
        access, refresh = await signin.sign_in(
            session=session,
            passwords=auth.passwords,
            throttle=auth.throttle,
            issuer=auth.issuer,
            reservation=reservation,
            password=body.password,
        )
    return TokenPair(access=access, refresh=refresh)


@_routes(
    "/token/refresh/",
    methods=["POST"],
    response_model=TokenPair,
    responses=error_responses(400, 401, 429),
)
async def refresh_token(body: RefreshRequest, session: SessionDep, auth: Components) -> TokenPair:
    try:
        access, refresh = await signin.rotate(
            session=session, issuer=auth.issuer, token=body.refresh
        )
    except signin.RefreshTokenReused:
        await session.commit()  # the family stays revoked although the answer is 401
        raise
    await session.commit()
    return TokenPair(access=access, refresh=refresh)


@_routes(
    "/logout/",
    methods=["POST"],
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 401),
)
async def logout(body: RefreshRequest, session: SessionDep, auth: Components) -> Response:
    async with session.begin():
        await signin.sign_out(session=session, issuer=auth.issuer, token=body.refresh)
    return Response(status_code=204)


@_routes("/me/", methods=["GET"], response_model=UserOut, responses=error_responses(401))
async def read_me(principal: CurrentPrincipal, session: SessionDep) -> UserOut:
    return _user_out(await service.get_active_user(session=session, user_id=principal.user_id))


@_routes("/me/", methods=["PATCH"], response_model=UserOut, responses=error_responses(400, 401))
async def update_me(
    body: UpdateMeRequest, principal: CurrentPrincipal, session: SessionDep, auth: Components
) -> UserOut:
    async with session.begin():
        user = await service.update_me(
            session=session,
            passwords=auth.passwords,
            user_id=principal.user_id,
            email=body.email,
            password=body.password,
            current_password=body.current_password,
        )
    return _user_out(user)


@_routes(
    "/me/",
    methods=["DELETE"],
    status_code=204,
    response_class=Response,
    responses=error_responses(401),
)
async def delete_me(principal: CurrentPrincipal, session: SessionDep) -> Response:
    async with session.begin():
        await service.delete_me(session=session, user_id=principal.user_id)
    return Response(status_code=204)


@_routes("/.well-known/jwks.json", methods=["GET"])
async def jwks(auth: Components, response: Response) -> dict[str, Any]:
    response.headers["Cache-Control"] = "public, max-age=300"
    return auth.keys.jwks()
