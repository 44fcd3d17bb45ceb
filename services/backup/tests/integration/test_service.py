from datetime import UTC, datetime, timedelta

import pytest

from backup.db import SessionMaker
from backup.models import User
from backup.service import apply_user_deletion, apply_user_snapshot
from contracts import UserDeleted, UserUpdated
from contracts.events import UserSnapshot

from ..conftest import JOINED, registered

pytestmark = pytest.mark.integration


def updated(user_id: int, username: str, version: int) -> UserUpdated:
    return UserUpdated.model_validate(
        registered(user_id, username, version=version).model_dump()
        | {"updated_at": JOINED + timedelta(days=version)}
    )


def deleted(user_id: int, version: int) -> UserDeleted:
    return UserDeleted(
        user_id=user_id, username="gone", version=version, deleted_at=datetime.now(UTC)
    )


async def apply(session_maker: SessionMaker, *events: UserSnapshot | UserDeleted) -> list[bool]:
    applied = []
    for event in events:
        async with session_maker() as session, session.begin():
            if isinstance(event, UserDeleted):
                applied.append(await apply_user_deletion(session=session, deletion=event))
            else:
                applied.append(await apply_user_snapshot(session=session, snapshot=event))
    return applied


async def stored(session_maker: SessionMaker, user_id: int) -> User | None:
    async with session_maker() as session:
        return await session.get(User, user_id)


async def test_an_older_update_arriving_late_is_ignored(session_maker: SessionMaker) -> None:
    applied = await apply(
        session_maker, registered(1, "ann"), updated(1, "ann3", 3), updated(1, "ann2", 2)
    )
    assert applied == [True, True, False]
    user = await stored(session_maker, 1)
    assert user is not None and (user.username, user.version) == ("ann3", 3)


async def test_a_duplicate_snapshot_changes_nothing(session_maker: SessionMaker) -> None:
    assert await apply(session_maker, updated(1, "ann", 2), updated(1, "ann", 2)) == [True, False]


async def test_deletion_removes_personal_data_and_blocks_older_updates(
    session_maker: SessionMaker,
) -> None:
    applied = await apply(
        session_maker, registered(1, "ann"), deleted(1, version=3), updated(1, "zombie", 2)
    )
    assert applied == [True, True, False]
    user = await stored(session_maker, 1)
    assert user is not None and user.deleted_at is not None
    assert (user.username, user.email, user.version) == (None, None, 3)


async def test_deletion_arriving_before_the_registration_still_wins(
    session_maker: SessionMaker,
) -> None:
    assert await apply(session_maker, deleted(4, version=2), registered(4, "late")) == [
        True,
        False,
    ]
    user = await stored(session_maker, 4)
    assert user is not None and user.deleted_at is not None


async def test_a_deletion_older_than_the_stored_state_is_ignored(
    session_maker: SessionMaker,
) -> None:
    assert await apply(session_maker, updated(5, "eve", 4), deleted(5, version=3)) == [True, False]
    user = await stored(session_maker, 5)
    assert user is not None and user.deleted_at is None and user.username == "eve"


async def test_a_newer_snapshot_after_a_deletion_brings_the_user_back(
    session_maker: SessionMaker,
) -> None:
    await apply(session_maker, registered(6, "bo"), deleted(6, version=2), updated(6, "bo", 3))
    user = await stored(session_maker, 6)
    assert user is not None and user.deleted_at is None and user.email == "bo@example.com"
