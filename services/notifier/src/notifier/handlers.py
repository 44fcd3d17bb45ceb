"""Event consumers of ``notifier.events``: thin, each decodes and calls one use case."""

from contracts import (
    Event,
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
from notifier.settings import DIGEST_SCAN_JOB, Settings
from servicekit import EventContext, Handler, record_user_state


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


async def on_schedule_tick(ctx: EventContext, event: ScheduleTick) -> None:
    """Plans digests on our own scan ticks; other services' ticks share the routing key."""
    if event.job != DIGEST_SCAN_JOB:
        return
    settings = ctx.resource(Settings)
    await scan_for_digests(session=ctx.session, scan_slot=event.slot, settings=settings)


#: What ``notifier.events`` consumes: the service's spec (``notifier.main``) declares it.
HANDLERS: dict[type[Event], Handler] = {
    UserRegistered: on_user_registered,
    UserUpdated: on_user_updated,
    UserDeleted: on_user_deleted,
    RecipeCreated: on_recipe_created,
    RecipeDeleted: on_recipe_deleted,
    RatingAdded: on_rating_added,
    ScheduleTick: on_schedule_tick,
}
