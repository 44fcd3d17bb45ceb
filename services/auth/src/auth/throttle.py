"""Sign-in throttling per username and per client address, counted in the database.

Counting failed attempts in PostgreSQL rather than in memory makes the limit hold across every
replica of the service. Only failures count; a successful sign-in clears its username's count.
"""

import math
from datetime import datetime, timedelta
from ipaddress import ip_address

from fastapi import Request
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from auth.models import LoginFailure
from servicekit.errors import ApiError

USERNAME = "username"
ADDRESS = "address"


class Throttled(ApiError):
    status_code = 429
    code = "throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Request was throttled. Expected available in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


def client_address(request: Request, *, trust_forwarded_for: bool) -> str:
    """The caller's address: behind the trusted gateway, the X-Forwarded-For hop it appended.

    Only the last hop: the gateway appends the address it saw, and everything before it was
    written by the client, who would otherwise pick a fresh throttle key for every attempt.
    """
    if trust_forwarded_for:
        last = request.headers.get("x-forwarded-for", "").split(",")[-1].strip()
        try:
            return str(ip_address(last))
        except ValueError:
            pass  # absent or garbage: fall back to the peer
    return request.client.host if request.client else "unknown"


class SignInThrottle:
    def __init__(self, *, per_username: int, per_address: int, window_seconds: int) -> None:
        self._limits = {USERNAME: per_username, ADDRESS: per_address}
        self._window = timedelta(seconds=window_seconds)

    async def check(
        self, session: AsyncSession, *, username: str, address: str, now: datetime
    ) -> None:
        """Raise Throttled when either count has reached its limit within the window."""
        waits = [
            await self._wait(session, scope, key, now)
            for scope, key in ((USERNAME, username.lower()), (ADDRESS, address))
        ]
        longest = max(waits)
        if longest > 0:
            raise Throttled(max(1, math.ceil(longest)))

    async def _wait(self, session: AsyncSession, scope: str, key: str, now: datetime) -> float:
        # The limit-th newest failure: once it leaves the window, one more attempt is allowed.
        oldest_counted = await session.scalar(
            select(col(LoginFailure.failed_at))
            .where(
                col(LoginFailure.scope) == scope,
                col(LoginFailure.key) == key,
                col(LoginFailure.failed_at) > now - self._window,
            )
            .order_by(col(LoginFailure.failed_at).desc())
            .offset(self._limits[scope] - 1)
            .limit(1)
        )
        if oldest_counted is None:
            return 0.0
        return (oldest_counted + self._window - now).total_seconds()

    async def record_failure(
        self, session: AsyncSession, *, username: str, address: str, now: datetime
    ) -> None:
        for scope, key in ((USERNAME, username.lower()), (ADDRESS, address)):
            await session.execute(
                delete(LoginFailure).where(
                    col(LoginFailure.scope) == scope,
                    col(LoginFailure.key) == key,
                    col(LoginFailure.failed_at) <= now - self._window,
                )
            )
            session.add(LoginFailure(scope=scope, key=key, failed_at=now))

    async def clear_username(self, session: AsyncSession, *, username: str) -> None:
        await session.execute(
            delete(LoginFailure).where(
                col(LoginFailure.scope) == USERNAME, col(LoginFailure.key) == username.lower()
            )
        )
