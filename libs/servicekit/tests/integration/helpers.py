from datetime import UTC, datetime

from sqlalchemy import func, select, text

from contracts import RecipeDeleted
from servicekit._consumer import EventContext
from servicekit._db import SessionMaker
from servicekit._tables import OutboxMessage


def deleted(recipe_id: int) -> RecipeDeleted:
    return RecipeDeleted(recipe_id=recipe_id, seller_id=1, deleted_at=datetime.now(UTC))


async def record_effect(ctx: EventContext, event: RecipeDeleted) -> None:
    """A handler whose effect is one row per application, so duplicates would show."""
    await ctx.session.execute(
        text("INSERT INTO applied_effects (event_id, note) VALUES (:e, :n)"),
        {"e": ctx.envelope.event_id, "n": str(event.recipe_id)},
    )


async def effects(session_maker: SessionMaker) -> list[str]:
    async with session_maker() as session:
        rows = await session.execute(text("SELECT note FROM applied_effects ORDER BY id"))
        return [row[0] for row in rows]


async def outbox_size(session_maker: SessionMaker) -> int:
    async with session_maker() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)
