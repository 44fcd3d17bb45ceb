"""Republishing every user as ``user.updated``: a runner (``auth replay-users``), not a use case.

It owns its transactions, one per batch, as the consumer does: a new consumer can seed its
copies from the events while the table is read in batches, and a failure part-way leaves the
batches already published in the outbox (each event is idempotent by its version).
"""

from collections.abc import AsyncIterator

from sqlalchemy import select
from sqlmodel import col

from auth.models import User
from auth.service import user_updated
from auth.settings import SERVICE_NAME
from servicekit import SessionMaker, add_event


async def replay_users(session_maker: SessionMaker, *, batch_size: int = 500) -> int:
    """Republish every user as ``user.updated`` (same version) so new consumers can seed copies."""
    count = 0
    async for batch in _user_batches(session_maker, batch_size):
        async with session_maker() as session, session.begin():
            for user in batch:
                await add_event(session, user_updated(user), producer=SERVICE_NAME)
        count += len(batch)
    return count


async def _user_batches(session_maker: SessionMaker, size: int) -> AsyncIterator[list[User]]:
    last_id = 0
    while True:
        async with session_maker() as session:
            batch = list(
                (
                    await session.scalars(
                        select(User)
                        .where(col(User.id) > last_id)
                        .order_by(col(User.id))
                        .limit(size)
                    )
                ).all()
            )
        if not batch:
            return
        yield batch
        last_id = batch[-1].id or last_id
