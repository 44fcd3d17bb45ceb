"""Sign-in throttling that stops guessing without handing anyone a way to lock an owner out.

Failures are rows in PostgreSQL, so the limits hold across every replica. Three counts, each
over the same sliding window:

- per (username, address): a hard limit, 429 until the oldest counted failure leaves the window.
  One address guessing one account stops here.
- per address: a hard limit across usernames (one address spraying many accounts).
- per username, from any address: the backstop against guessing spread over many addresses.
  Usernames are public (``seller_username``, a rating's ``user``), so a hard stop per username
  would let anyone lock any account out (issue 16 row 1). Once a username has reached its limit
  it only refuses addresses that have failed a sign-in themselves within the window: an owner
  coming from an address with no failures always gets a password check, while each address of a
  distributed guesser gets one try per window before it is refused.

Check and count are one step (issue 16 row 2): under a transaction-scoped advisory lock on the
username and on the address, the counts are read and the attempt is *reserved* as a failure
before the password is checked; a success deletes the reservation afterwards. Concurrent guesses
therefore see each other's reservations, and never get more password checks than the limits.
The reservation must be committed before the password check (and a wrong password leaves it
committed, although the request answers 401): the sign-in route commits it in a transaction of
its own; neither method here commits (the transaction rule in ``auth.api``).
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import ip_address

from fastapi import Request
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from auth.models import LoginFailure
from servicekit import ApiError

USERNAME = "username"
ADDRESS = "address"
ACCOUNT_ADDRESS = "username@address"
#: ``login_failures.key`` is 255 characters; no valid username is longer than 150.
KEY_LENGTH = 255


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


@dataclass(frozen=True)
class Reservation:
    """The failure rows written before a password check; a success deletes them."""

    ids: tuple[int, ...]
    username: str
    address: str


def _keys(username: str, address: str) -> dict[str, str]:
    name = username.lower()
    return {
        USERNAME: name[:KEY_LENGTH],
        ADDRESS: address[:KEY_LENGTH],
        ACCOUNT_ADDRESS: f"{address} {name}"[:KEY_LENGTH],
    }


class SignInThrottle:
    def __init__(
        self,
        *,
        per_account_and_address: int,
        per_address: int,
        per_username: int,
        window_seconds: int,
    ) -> None:
        self._limits = {
            ACCOUNT_ADDRESS: per_account_and_address,
            ADDRESS: per_address,
            USERNAME: per_username,
        }
        self._window = timedelta(seconds=window_seconds)

    async def reserve(
        self, *, session: AsyncSession, username: str, address: str, now: datetime
    ) -> Reservation:
        """Count this attempt as a failure unless a limit refuses it (Throttled).

        The caller commits the reservation before checking the password: the advisory locks
        then serialise the attempts on one username or one address only for the few
        milliseconds of counting, never across the password check.
        """
        keys = _keys(username, address)
        for lock in sorted((f"{USERNAME} {keys[USERNAME]}", f"{ADDRESS} {keys[ADDRESS]}")):
            await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(lock))))
        waits = {scope: await self._wait(session, scope, key, now) for scope, key in keys.items()}
        refusals = [waits[ACCOUNT_ADDRESS], waits[ADDRESS]]
        if waits[USERNAME] > 0:
            # The backstop refuses only addresses that have failed themselves, until the
            # sooner of: the username falling under its limit, the address's failures expiring.
            address_clean_in = await self._clean_in(session, keys[ADDRESS], now)
            if address_clean_in > 0:
                refusals.append(min(waits[USERNAME], address_clean_in))
        longest = max(refusals)
        if longest > 0:
            raise Throttled(max(1, math.ceil(longest)))
        await self._forget_expired(session, keys, now)
        rows = [LoginFailure(scope=scope, key=key, failed_at=now) for scope, key in keys.items()]
        session.add_all(rows)
        await session.flush()
        ids = tuple(row.id for row in rows if row.id is not None)
        return Reservation(ids=ids, username=username, address=address)

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

    async def _clean_in(self, session: AsyncSession, address: str, now: datetime) -> float:
        """Seconds until the address has no failure in the window (0: it has none)."""
        newest = await session.scalar(
            select(func.max(col(LoginFailure.failed_at))).where(
                col(LoginFailure.scope) == ADDRESS,
                col(LoginFailure.key) == address,
                col(LoginFailure.failed_at) > now - self._window,
            )
        )
        if newest is None:
            return 0.0
        return (newest + self._window - now).total_seconds()

    async def _forget_expired(
        self, session: AsyncSession, keys: dict[str, str], now: datetime
    ) -> None:
        for scope, key in keys.items():
            await session.execute(
                delete(LoginFailure).where(
                    col(LoginFailure.scope) == scope,
                    col(LoginFailure.key) == key,
                    col(LoginFailure.failed_at) <= now - self._window,
                )
            )

    async def succeeded(self, *, session: AsyncSession, reservation: Reservation) -> None:
        """The password was right: drop the reservation and this address's count for the account.

        The username's count from other addresses stays: the owner signing in must not reset a
        guesser's progress elsewhere (the backstop still needs it).
        """
        keys = _keys(reservation.username, reservation.address)
        await session.execute(delete(LoginFailure).where(col(LoginFailure.id).in_(reservation.ids)))
        await session.execute(
            delete(LoginFailure).where(
                col(LoginFailure.scope) == ACCOUNT_ADDRESS,
                col(LoginFailure.key) == keys[ACCOUNT_ADDRESS],
            )
        )
