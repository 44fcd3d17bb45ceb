"""Verifying the auth service's access tokens with its public JWK Set only.

No secret is shared: the auth service signs with a private key (EdDSA by default) and publishes
the public keys at ``/api/auth/.well-known/jwks.json``. The verifier caches that set, refetches it
on an unknown ``kid`` (at most once per ``refetch_interval``, so forged kids cannot hammer the
auth service), accepts only the configured algorithms and checks ``iss``, ``aud``, ``exp`` and
``typ``.

An outage of the key set costs one timeout at most (issue 15: with auth hanging, each request
had waited for its own fetch after the one before, six requests taking 5 to 30 s). One fetch runs
at a time and everyone needing the keys meanwhile awaits that one; a failed fetch keeps the keys
known before, and the next attempt waits ``refetch_interval``, doubled after each failure in a
row up to ``cache_seconds``, while tokens signed by known keys keep being accepted and others are
refused at once.

A client sends the same access token with every request, and checking its signature and claims
cost a quarter of a rating's CPU; so a verified token's principal is remembered, keyed by the
whole token string (any change to it is another key), until the token expires. The memory is
bounded (oldest forgotten first) and emptied whenever the published key set changes, so a key
withdrawn from the set stops being honoured at the next refetch, as without the memory.

A valid token of a user deleted or deactivated since it was issued is refused too, when the app
sets ``app.state.revoked_users`` (a ``RevocationCheck``, see ``servicekit._revocation``): checked
on every request, never remembered, so it holds from the moment the service applies the event.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from servicekit._errors import NotAuthenticated, PermissionDenied
from servicekit._settings import TokenSettings

logger = logging.getLogger(__name__)

JwksFetcher = Callable[[], Awaitable[dict[str, Any]]]
#: ``user_id -> revoked?``: the user was deleted or deactivated after the token was issued.
RevocationCheck = Callable[[int], Awaitable[bool]]

INVALID_TOKEN = "Given token not valid for any token type"


class TokenError(Exception):
    """The token is not one this service accepts."""


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the access token says."""

    user_id: int
    username: str
    role: str
    token_id: str


def http_jwks_fetcher(url: str, *, timeout: float = 5.0) -> JwksFetcher:
    async def fetch() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

    return fetch


class TokenVerifier:
    def __init__(
        self,
        fetch_jwks: JwksFetcher,
        *,
        issuer: str,
        audience: str,
        algorithms: tuple[str, ...] = ("EdDSA",),
        token_type: str = "access",
        cache_seconds: float = 300.0,
        refetch_interval: float = 10.0,
        leeway: float = 10.0,
        remembered_tokens: int = 10_000,
    ) -> None:
        self._fetch_jwks = fetch_jwks
        self._issuer = issuer
        self._audience = audience
        self._algorithms = algorithms
        self._token_type = token_type
        self._cache_seconds = cache_seconds
        self._refetch_interval = refetch_interval
        self._leeway = leeway
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        #: The fetch in flight, which every caller needing the keys meanwhile awaits.
        self._refreshing: asyncio.Future[None] | None = None
        #: Fetches failed in a row, and when the next may start (a backoff).
        self._failures = 0
        self._next_attempt_at = float("-inf")
        self._remembered_tokens = remembered_tokens
        #: token -> (principal, expiry as a Unix time); insertion order is age.
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def verify(self, token: str) -> Principal:
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, expires_at = remembered
            if time.time() < expires_at + self._leeway:
                return principal
            del self._verified[token]
        principal, expires_at = await self._verify_signed(token)
        if len(self._verified) >= self._remembered_tokens:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, expires_at)
        return principal

    async def _verify_signed(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        if header.get("alg") not in self._algorithms:
            raise TokenError("algorithm not accepted")
        key = await self._key(str(header.get("kid", "")))
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(self._algorithms),
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from exc
        if claims.get("typ") != self._token_type:
            raise TokenError("wrong token type")
        try:
            principal = Principal(
                user_id=int(claims["sub"]),
                username=str(claims["username"]),
                role=str(claims["role"]),
                token_id=str(claims["jti"]),
            )
            return principal, float(claims["exp"])
        except (KeyError, ValueError) as exc:
            raise TokenError("incomplete claims") from exc

    async def _key(self, kid: str) -> jwt.PyJWK:
        now = time.monotonic()
        stale = now - self._fetched_at > self._cache_seconds
        unknown = kid not in self._keys and now - self._fetched_at > self._refetch_interval
        if (stale or unknown) and now >= self._next_attempt_at:
            await self._refresh_once()
        if kid not in self._keys:
            raise TokenError("unknown signing key" if self._keys else "signing keys unavailable")
        return self._keys[kid]

    async def _refresh_once(self) -> None:
        """Join the fetch in flight, or start one: never two at a time (single flight)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        # A caller that gives up (its request cancelled) must not cancel the others' fetch.
        await asyncio.shield(self._refreshing)

    async def _refresh(self) -> None:
        try:
            jwks = await self._fetch_jwks()
            key_set = jwt.PyJWKSet.from_dict(jwks)
        except Exception as exc:
            # Keep serving with the keys we have; ask again only after a growing pause.
            self._failures += 1
            longest = max(self._refetch_interval, self._cache_seconds)
            pause = min(self._refetch_interval * 2 ** (self._failures - 1), longest)
            self._next_attempt_at = time.monotonic() + pause
            logger.warning("fetching the JWK Set failed (%s); next attempt in %.0f s", exc, pause)
            return
        self._failures = 0
        self._next_attempt_at = float("-inf")
        keys = {key.key_id: key for key in key_set.keys if key.key_id}
        if keys.keys() != self._keys.keys():
            self._verified.clear()
        self._keys = keys
        self._fetched_at = time.monotonic()


def verifier_from_settings(settings: TokenSettings) -> TokenVerifier:
    """The production verifier: the auth service's JWK Set over HTTP."""
    return TokenVerifier(
        http_jwks_fetcher(settings.jwks_url),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


_bearer = HTTPBearer(auto_error=False)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller; 401 without a valid access token. Needs ``app.state.token_verifier``."""
    if credentials is None:
        raise NotAuthenticated(
            "Authentication credentials were not provided.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        principal = await verifier.verify(credentials.credentials)
    except TokenError as exc:
        raise NotAuthenticated(
            INVALID_TOKEN, code="token_not_valid", headers={"WWW-Authenticate": "Bearer"}
        ) from exc
    revoked: RevocationCheck | None = getattr(request.app.state, "revoked_users", None)
    if revoked is not None and await revoked(principal.user_id):
        raise revoked_user()
    return principal


def revoked_user() -> NotAuthenticated:
    """The 401 for a valid token of a user since deleted or deactivated."""
    return NotAuthenticated(
        "User is deleted or inactive", code="user_inactive", headers={"WWW-Authenticate": "Bearer"}
    )


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def optional_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    """The caller if a token was sent (a bad one is still a 401), else None."""
    if credentials is None:
        return None
    return await current_principal(request, credentials)


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


def require_role(role: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role != role:
            raise PermissionDenied(f"Only a {role} may do this.")
        return principal

    return check


SellerPrincipal = Annotated[Principal, Depends(require_role("seller"))]
CustomerPrincipal = Annotated[Principal, Depends(require_role("customer"))]
