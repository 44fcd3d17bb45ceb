"""Refusing deleted and deactivated users in services that only know them from events.

An access token stays valid until it expires (15 minutes), so a service that trusts the token
alone lets a deleted account keep writing, and what it writes after ``user.deleted`` was applied
is never cleaned up (issue 16 row 3). Each service that accepts writes keeps a ``revoked_users``
row per user whose latest ``user.*`` event says deleted or inactive, and:

- refuses their tokens (401) from the moment the event is applied: ``RevokedUsers`` is the check
  ``servicekit._tokens`` runs for every authenticated request (one primary-key lookup);
- serialises every write a user makes with the application of that user's events, so nothing
  slips in between the check and the cleanup: a write takes a *shared* transaction-scoped
  advisory lock on its user and then checks the row (``hold_writer``); applying a user event
  takes the *exclusive* lock first (``record_user_state``). A write that started first commits
  before the event's cleanup runs and is removed by it; a write that starts later waits, sees
  the row, and is refused. Writes of different users never wait for each other.

The remaining window is the event's delivery: between ``DELETE /api/auth/me/`` committing in the
auth service and this service applying ``user.deleted`` (normally well under a second; as long as
the broker or this service is down at worst), the old token still works here, and whatever it
writes then is removed with the rest when the event is applied.
"""

from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import psycopg
from sqlalchemy import BigInteger, Column, DateTime, bindparam, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import Field, SQLModel, col

from servicekit._tables import utcnow

if TYPE_CHECKING:  # workers import this module for the event side, without the web stack
    from fastapi import FastAPI

#: The first key of the two-key advisory locks taken per user (any constant of this database).
USER_LOCK_SPACE = 16_003


class RevokedUser(SQLModel, table=True):
    """The latest known access state of a user: revoked when deleted or deactivated."""

    __tablename__ = "revoked_users"

    user_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    #: The version of the ``user.*`` event this state comes from; older events are ignored.
    version: int = Field(sa_column=Column(BigInteger, nullable=False))
    revoked: bool
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


def _user_lock_key(user_id: int) -> int:
    # The two-key form takes 32-bit keys; ids past that share a lock, which only costs waiting.
    return user_id % 2_147_483_647


async def record_user_state(
    session: AsyncSession, *, user_id: int, version: int, revoked: bool
) -> bool:
    """Note a user's state from an event under the user's exclusive lock; True when newest.

    Call it before cleaning up what the user wrote, in the same transaction: writes of this user
    wait until that transaction ends.
    """
    await session.execute(
        select(func.pg_advisory_xact_lock(USER_LOCK_SPACE, _user_lock_key(user_id)))
    )
    stmt = insert(RevokedUser).values(
        user_id=user_id, version=version, revoked=revoked, updated_at=utcnow()
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[col(RevokedUser.user_id)],
        set_={"version": version, "revoked": revoked, "updated_at": utcnow()},
        where=col(RevokedUser.version) < version,
    )
    return await session.scalar(upsert.returning(col(RevokedUser.user_id))) is not None


#: ``hold_writer``'s statements, in psycopg's own parameter style (it runs them through the driver).
_LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(%s, %s)"
_REVOKED = f"SELECT revoked FROM {RevokedUser.__tablename__} WHERE user_id = %s"
#: ``RevokedUsers``' check, the user bound at execution.
_READ_REVOKED = select(col(RevokedUser.revoked)).where(
    col(RevokedUser.user_id) == bindparam("user_id")
)


async def hold_writer(session: AsyncSession, user_id: int) -> None:
    """Start a write of ``user_id``: wait for any of their events being applied, then refuse
    them (401) if they are revoked. Call first in the write's transaction."""
    from servicekit._tokens import revoked_user  # the web side only (see TYPE_CHECKING above)

    if await writer_is_revoked(session, user_id):
        raise revoked_user()


async def writer_is_revoked(session: AsyncSession, user_id: int) -> bool:
    """``hold_writer`` for a write that has no token to refuse (a signed link, say): take the
    user's shared lock, then tell whether they are revoked, so that the caller writes nothing
    for a user whose cleanup has run (or is running)."""
    # Two statements, so that the check's snapshot is taken once the lock is held (READ
    # COMMITTED: one snapshot per statement), sent in one round trip with the transaction's
    # BEGIN through psycopg's pipeline mode: three round trips were a fifth of a rating's CPU
    # (issue 20).
    connection = await session.connection()
    driver = cast(
        "psycopg.AsyncConnection[Any]", (await connection.get_raw_connection()).driver_connection
    )
    async with driver.pipeline(), driver.cursor() as locking, driver.cursor() as checking:
        await locking.execute(_LOCK_SHARED, (USER_LOCK_SPACE, _user_lock_key(user_id)))
        await checking.execute(_REVOKED, (user_id,))
        found = await checking.fetchone()
    return found is not None and bool(found[0])


class RevokedUsers:
    """The check ``servicekit._tokens`` runs for each authenticated request: set it as
    ``app.state.revoked_users``. It uses the app's ``engine``, which the lifespan makes.

    One statement on an autocommit connection: an ORM session would add a ``BEGIN`` and a
    ``ROLLBACK`` round trip to every authenticated request (issue 20: with them, the check cost
    a rating more server CPU than the rating's own statement).
    """

    def __init__(self, app: "FastAPI") -> None:
        self._state = app.state

    async def __call__(self, user_id: int) -> bool:
        engine: AsyncEngine = self._state.engine
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            return bool(await connection.scalar(_READ_REVOKED, {"user_id": user_id}))
