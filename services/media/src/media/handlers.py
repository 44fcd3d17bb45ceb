"""Event handlers of the media queue: thin, they decode and call the pipeline."""

from datetime import UTC, datetime

from contracts import RecipeCreated, RecipeDeleted, RecipeUpdated
from media.metrics import QUEUE_WAIT_SECONDS
from media.service import ImagePipeline
from servicekit.consumer import Consumer, EventContext


def register_handlers(consumer: Consumer, pipeline: ImagePipeline) -> None:
    async def on_recipe_changed(ctx: EventContext, event: RecipeCreated | RecipeUpdated) -> None:
        if event.image is None:
            return  # a change that brought no new image
        waited = datetime.now(UTC) - ctx.envelope.occurred_at
        QUEUE_WAIT_SECONDS.observe(max(0.0, waited.total_seconds()))
        await pipeline.process_image(
            session=ctx.session,
            publish=ctx.publish,
            recipe_id=event.recipe_id,
            reference=event.image,
        )

    async def on_recipe_deleted(ctx: EventContext, event: RecipeDeleted) -> None:
        await pipeline.purge_recipe(session=ctx.session, recipe_id=event.recipe_id)

    consumer.on(RecipeCreated, on_recipe_changed)
    consumer.on(RecipeUpdated, on_recipe_changed)
    consumer.on(RecipeDeleted, on_recipe_deleted)
