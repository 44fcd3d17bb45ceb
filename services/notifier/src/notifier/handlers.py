"""Event consumers of ``notifier.events``: thin, each decodes and calls one use case."""

from contracts import (
    RatingAdded,
    RecipeCreated,
    RecipeDeleted,
    ScheduleTick,
    UserDeleted,
    UserRegistered,
    UserUpdated,
)
from notifier.service import copies
from notifier.service.planning import scan_for_digests
from notifier.settings import DIGEST_SCAN_JOB, QUEUE_NAME, SERVICE_NAME, Settings
from servicekit.bus import RetryPolicy
from servicekit.consumer import Consumer, EventContext
from servicekit.db import SessionMaker
from servicekit.revocation import record_user_state


async def on_user_registered(ctx: EventContext, event: UserRegistered) -> None:
    await copies.apply_user(session=ctx.session, event=event)
    # Without an address there is nobody to welcome (adding one later starts the digests only).
    if event.email:
        await copies.queue_welcome(session=ctx.session, user_id=event.user_id, at=event.date_joined)


async def on_user_updated(ctx: EventContext, event: UserUpdated) -> None:
    await record_user_state(
        ctx.session, user_id=event.user_id, version=event.version, revoked=not event.is_active
    )
    await copies.apply_user(session=ctx.session, event=event)


async def on_user_deleted(ctx: EventContext, event: UserDeleted) -> None:
    # First: the user's preference changes wait for this transaction, then are refused.
    await record_user_state(ctx.session, user_id=event.user_id, version=event.version, revoked=True)
    await copies.apply_user_deleted(session=ctx.session, event=event)


async def on_recipe_created(ctx: EventContext, event: RecipeCreated) -> None:
    await copies.apply_recipe_created(session=ctx.session, event=event)


async def on_recipe_deleted(ctx: EventContext, event: RecipeDeleted) -> None:
    await copies.apply_recipe_deleted(session=ctx.session, event=event)


async def on_rating_added(ctx: EventContext, event: RatingAdded) -> None:
    await copies.apply_rating(session=ctx.session, event=event)


class TickHandler:
    """Plans digests on our own scan ticks; other services' ticks share the routing key."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def __call__(self, ctx: EventContext, event: ScheduleTick) -> None:
        if event.job != DIGEST_SCAN_JOB:
            return
        await scan_for_digests(session=ctx.session, scan_slot=event.slot, settings=self._settings)


def build_consumer(
    session_maker: SessionMaker, settings: Settings, *, retry_policy: RetryPolicy | None = None
) -> Consumer:
    consumer = Consumer(
        queue=QUEUE_NAME,
        producer=SERVICE_NAME,
        session_maker=session_maker,
        retry_policy=retry_policy or settings.retry_policy,
        prefetch=settings.prefetch,
        batch_size=settings.consumer_batch_size,
    )
    consumer.on(UserRegistered, on_user_registered)
    consumer.on(UserUpdated, on_user_updated)
    consumer.on(UserDeleted, on_user_deleted)
    consumer.on(RecipeCreated, on_recipe_created)
    consumer.on(RecipeDeleted, on_recipe_deleted)
    consumer.on(RatingAdded, on_rating_added)
    consumer.on(ScheduleTick, TickHandler(settings))
    return consumer
