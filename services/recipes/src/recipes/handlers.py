"""Event consumers of the recipes service (queue ``recipes.events``): decode, call a use case."""

import logging

from contracts import Event, RecipeImageFailed, RecipeImageReady, UserDeleted, UserUpdated
from recipes import ratings, service
from servicekit import EventContext, Handler, record_user_state

logger = logging.getLogger(__name__)


async def on_image_ready(ctx: EventContext, event: RecipeImageReady) -> None:
    if not await service.apply_image_ready(session=ctx.session, event=event):
        logger.info(
            "ignored image_ready v%s for recipe %s (newer image or recipe gone)",
            event.image_version,
            event.recipe_id,
        )


async def on_image_failed(ctx: EventContext, event: RecipeImageFailed) -> None:
    if not await service.apply_image_failed(session=ctx.session, event=event):
        logger.info("ignored image_failed v%s for recipe %s", event.image_version, event.recipe_id)


async def on_user_updated(ctx: EventContext, event: UserUpdated) -> None:
    await record_user_state(
        ctx.session, user_id=event.user_id, version=event.version, revoked=not event.is_active
    )
    await service.rename_user(session=ctx.session, event=event)


async def on_user_deleted(ctx: EventContext, event: UserDeleted) -> None:
    # First: from here on the user's writes wait for this transaction, then are refused, so
    # the removals below catch everything the user wrote (see servicekit._revocation).
    await record_user_state(ctx.session, user_id=event.user_id, version=event.version, revoked=True)
    await ratings.remove_users_ratings(session=ctx.session, event=event, publish=ctx.publish)
    await service.delete_sellers_recipes(session=ctx.session, event=event, publish=ctx.publish)


#: What ``recipes.events`` consumes: the service's spec (``recipes.main``) declares it.
HANDLERS: dict[type[Event], Handler] = {
    RecipeImageReady: on_image_ready,
    RecipeImageFailed: on_image_failed,
    UserUpdated: on_user_updated,
    UserDeleted: on_user_deleted,
}
