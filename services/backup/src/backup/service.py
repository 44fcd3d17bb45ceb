"""Keeping the copy of user data: every change applies only if its version is newer.

Out-of-order or duplicated delivery is therefore harmless: an older snapshot loses against the
stored row inside one ``INSERT ... ON CONFLICT ... WHERE`` statement, which locks the row, so two
events for one user cannot interleave.
"""

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backup.models import User
from contracts import UserDeleted
from contracts.events import UserSnapshot


async def apply_user_snapshot(*, session: AsyncSession, snapshot: UserSnapshot) -> bool:
    """Store a registered or updated user; True when it was newer than what we had.

    A snapshot newer than a deletion brings the user back (auth re-used the id on purpose);
    an older one does not, because the tombstone kept the deletion's version.
    """
    values = {
        "user_id": snapshot.user_id,
        "username": snapshot.username,
        "email": snapshot.email,
        "role": snapshot.role.value,
        "is_active": snapshot.is_active,
        "date_joined": snapshot.date_joined,
        "updated_at": snapshot.updated_at,
        "version": snapshot.version,
        "deleted_at": None,
    }
    statement = insert(User).values(**values)
    upsert = statement.on_conflict_do_update(
        index_elements=[col(User.user_id)],
        set_={name: statement.excluded[name] for name in values if name != "user_id"},
        where=col(User.version) < statement.excluded.version,
    ).returning(col(User.user_id))
    return await session.scalar(upsert) is not None


async def apply_user_deletion(*, session: AsyncSession, deletion: UserDeleted) -> bool:
    """Turn the user into a tombstone; True unless a newer change was already stored.

    A deletion wins a tie with a snapshot of the same version: the deletion is the user's last
    word, and keeping the data of someone who left is the worse mistake.
    """
    tombstone = {
        "user_id": deletion.user_id,
        "username": None,
        "email": None,
        "role": None,
        "is_active": False,
        "date_joined": None,
        "updated_at": None,
        "version": deletion.version,
        "deleted_at": deletion.deleted_at,
    }
    statement = insert(User).values(**tombstone)
    upsert = statement.on_conflict_do_update(
        index_elements=[col(User.user_id)],
        set_={name: statement.excluded[name] for name in tombstone if name != "user_id"},
        where=col(User.version) <= statement.excluded.version,
    ).returning(col(User.user_id))
    return await session.scalar(upsert) is not None
