"""Signing in: credentials → an access and a refresh token; refresh rotation; logout.

Refresh tokens are stored as SHA-256 digests (they are long random-signed strings, so a fast hash
suffices). Each refresh rotates the token within its family; presenting a token that was already
used means it was copied, so the whole family is revoked and both holders must sign in again.

Nothing here commits (the transaction rule in ``auth.api``). Two outcomes must persist although
the request answers 401, and the routes commit them: the throttle's reservation, committed
before ``sign_in`` checks the password (``auth.throttle``), and the revocation of a family whose
used token came back (``RefreshTokenReused``).
"""

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from auth.keys import KeyRing
from auth.models import LoginFailure, RefreshToken, User
from auth.passwords import Passwords
from auth.throttle import Reservation, SignInThrottle
from servicekit import NotAuthenticated

NO_ACTIVE_ACCOUNT = "No active account found with the given credentials"
TOKEN_INVALID = "Token is invalid or expired"
ACCESS = "access"
REFRESH = "refresh"
#: Kept past expiry a little, so a late refresh still reads "invalid", not "unknown".
PRUNE_GRACE = timedelta(days=1)


def _invalid_refresh() -> NotAuthenticated:
    return NotAuthenticated(TOKEN_INVALID, code="token_not_valid")


class RefreshTokenReused(NotAuthenticated):
    """A used refresh token came back: its family is revoked, which the caller must commit."""

    def __init__(self) -> None:
        super().__init__(TOKEN_INVALID, code="token_not_valid")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenIssuer:
    keys: KeyRing
    issuer: str
    audience: str
    access_lifetime: timedelta
    refresh_lifetime: timedelta

    def token(self, user: User, *, typ: str, now: datetime, jti: str | None = None) -> str:
        lifetime = self.access_lifetime if typ == ACCESS else self.refresh_lifetime
        issued = int(now.timestamp())
        return self.keys.sign(
            {
                "iss": self.issuer,
                "aud": self.audience,
                "sub": str(user.id),
                # SimpleJWT's names, for clients of the original API that read them.
                "user_id": user.id,
                "token_type": typ,
                "username": user.username,
                "role": user.role,
                "typ": typ,
                "iat": issued,
                "exp": issued + int(lifetime.total_seconds()),
                "jti": jti or uuid.uuid4().hex,
            }
        )

    def refresh_claims(self, token: str) -> dict[str, object]:
        """The claims of a refresh token this service signed; raises NotAuthenticated."""
        try:
            claims = self.keys.decode(
                token,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise _invalid_refresh() from exc
        if claims.get("typ") != REFRESH:
            raise _invalid_refresh()
        return claims


async def _issue_pair(
    session: AsyncSession, issuer: TokenIssuer, user: User, *, family: uuid.UUID, now: datetime
) -> tuple[str, str]:
    assert user.id is not None
    jti = uuid.uuid4().hex
    refresh = issuer.token(user, typ=REFRESH, now=now, jti=jti)
    session.add(
        RefreshToken(
            jti=jti,
            token_hash=token_digest(refresh),
            family_id=family,
            user_id=user.id,
            created_at=now,
            expires_at=now + issuer.refresh_lifetime,
        )
    )
    return issuer.token(user, typ=ACCESS, now=now), refresh


async def sign_in(
    *,
    session: AsyncSession,
    passwords: Passwords,
    throttle: SignInThrottle,
    issuer: TokenIssuer,
    reservation: Reservation,
    password: str,
) -> tuple[str, str]:
    """A new token pair (a new family) for the reserved attempt; 401 on bad credentials.

    ``reservation`` (``SignInThrottle.reserve``) is committed already: it counts this attempt
    as a failure unless a success here deletes it.
    """
    now = datetime.now(UTC)
    user = await session.scalar(select(User).where(col(User.username) == reservation.username))
    if user is None:
        await passwords.verify_dummy(password)  # same cost as a real check: no user enumeration
        ok = False
    else:
        ok = await passwords.verify(user.password_hash, password) and user.is_active
    if user is None or not ok:
        raise NotAuthenticated(NO_ACTIVE_ACCOUNT, code="no_active_account")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hash(password)
    await throttle.succeeded(session=session, reservation=reservation)
    return await _issue_pair(session, issuer, user, family=uuid.uuid4(), now=now)


async def revoke_family(*, session: AsyncSession, family: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )


async def _locked_token(session: AsyncSession, issuer: TokenIssuer, token: str) -> RefreshToken:
    issuer.refresh_claims(token)
    query = select(RefreshToken).where(col(RefreshToken.token_hash) == token_digest(token))
    stored = await session.scalar(query.with_for_update())
    if stored is None:
        raise _invalid_refresh()
    return stored


async def rotate(*, session: AsyncSession, issuer: TokenIssuer, token: str) -> tuple[str, str]:
    """Exchange a refresh token for a new pair; a reused token revokes its family."""
    now = datetime.now(UTC)
    stored = await _locked_token(session, issuer, token)
    if stored.revoked_at is not None or stored.expires_at <= now:
        raise _invalid_refresh()
    if stored.used_at is not None:
        await revoke_family(session=session, family=stored.family_id, now=now)
        raise RefreshTokenReused()
    user = await session.get(User, stored.user_id)
    if user is None or not user.is_active:
        raise _invalid_refresh()
    stored.used_at = now
    return await _issue_pair(session, issuer, user, family=stored.family_id, now=now)


async def sign_out(*, session: AsyncSession, issuer: TokenIssuer, token: str) -> None:
    """Revoke the family of a refresh token: none of its tokens can be refreshed again."""
    stored = await _locked_token(session, issuer, token)
    await revoke_family(session=session, family=stored.family_id, now=datetime.now(UTC))


async def prune_expired(*, session: AsyncSession, now: datetime) -> int:
    """Delete refresh tokens past their expiry and failures past any throttle window."""
    tokens = await session.execute(
        delete(RefreshToken).where(col(RefreshToken.expires_at) < now - PRUNE_GRACE)
    )
    await session.execute(
        delete(LoginFailure).where(col(LoginFailure.failed_at) < now - PRUNE_GRACE)
    )
    return int(getattr(tokens, "rowcount", 0) or 0)
