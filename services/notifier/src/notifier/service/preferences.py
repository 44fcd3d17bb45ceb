"""Use cases of a user's notification preferences: read, change, one-click unsubscribe."""

from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from notifier.models import Preference
from notifier.schemas import PreferencesIn, PreferencesOut
from servicekit import hold_writer, utcnow, writer_is_revoked


async def get_preferences(
    *, session: AsyncSession, user_id: int, default_zone: str
) -> PreferencesOut:
    stored = await session.get(Preference, user_id)
    if stored is None:
        return PreferencesOut(daily_digest=True, timezone=default_zone)
    return PreferencesOut(
        daily_digest=stored.daily_digest, timezone=stored.timezone or default_zone
    )


async def update_preferences(
    *, session: AsyncSession, user_id: int, change: PreferencesIn, default_zone: str
) -> PreferencesOut:
    """Upsert what ``change`` sets (a user may choose before their account reaches us)."""
    await hold_writer(session, user_id)  # a deleted user's change waits for, then meets, the 401
    values = change.model_dump(exclude_unset=True)
    if values.get("daily_digest") is None:
        values.pop("daily_digest", None)
    values["updated_at"] = utcnow()
    await _upsert(session=session, user_id=user_id, values=values)
    return await get_preferences(session=session, user_id=user_id, default_zone=default_zone)


async def unsubscribe(*, session: AsyncSession, user_id: int) -> None:
    """Turn the digest off (idempotent). Nothing is written for a deleted or deactivated user:
    their link stays valid (it never expires), but a row written now would outlive the cleanup
    of their data, and they get no digest anyway."""
    if await writer_is_revoked(session, user_id):
        return
    await _upsert(
        session=session, user_id=user_id, values={"daily_digest": False, "updated_at": utcnow()}
    )


async def _upsert(*, session: AsyncSession, user_id: int, values: dict[str, Any]) -> None:
    row = {"daily_digest": True, "timezone": None, **values, "user_id": user_id}
    stmt = insert(Preference).values(row)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=[col(Preference.user_id)], set_=values)
    )
