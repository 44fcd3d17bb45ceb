"""Event handlers of the media queue: thin, they decode and call the pipeline."""

from datetime import UTC, datetime

from contracts import Event, RecipeCreated, RecipeDeleted, RecipeUpdated
from media.metrics import QUEUE_WAIT_SECONDS
from media.service import ImagePipeline
from servicekit import EventContext, Handler


async def on_recipe_changed(ctx: EventContext, event: RecipeCreated | RecipeUpdated) -> None:
    if event.image is None:
        return  # a change that brought no new image
    waited = datetime.now(UTC) - ctx.envelope.occurred_at
    QUEUE_WAIT_SECONDS.observe(max(0.0, waited.total_seconds()))
    await ctx.resource(ImagePipeline).process_image(
        session=ctx.session,
        publish=ctx.publish,
        recipe_id=event.recipe_id,
        reference=event.image,
    )


async def on_recipe_deleted(ctx: EventContext, event: RecipeDeleted) -> None:
    await ctx.resource(ImagePipeline).purge_recipe(session=ctx.session, recipe_id=event.recipe_id)


#: What ``media.events`` consumes: the service's spec (``media.main``) declares it.
HANDLERS: dict[type[Event], Handler] = {
    RecipeCreated: on_recipe_changed,
    RecipeUpdated: on_recipe_changed,
    RecipeDeleted: on_recipe_deleted,
}
