"""Through the real broker: the API's relay publishes, the worker's consumer applies."""

import asyncio
import hashlib
from collections.abc import AsyncIterator

import aio_pika
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from contracts import EXCHANGE_NAME, Envelope, ImageVariant, RecipeImageReady, make_envelope
from recipes.app import create_app
from recipes.main import service
from recipes.settings import Settings
from servicekit import Bus
from servicekit.testing import TokenFactory
from tests.support import PNG, Users

pytestmark = pytest.mark.integration


async def handled_events(app: FastAPI) -> int:
    async with app.state.session_maker() as session:
        return int(await session.scalar(text("SELECT count(*) FROM inbox_messages")) or 0)


@pytest.fixture
async def relaying_client(
    settings: Settings, token_factory: TokenFactory, amqp_url: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(
        settings.model_copy(update={"amqp_url": amqp_url}),
        token_verifier=token_factory.verifier(),
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield app, client


async def test_upload_publishes_one_recipe_created_whose_reference_fetches_the_bytes(
    relaying_client: tuple[FastAPI, httpx.AsyncClient], users: Users, amqp_url: str
) -> None:
    _, client = relaying_client
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            EXCHANGE_NAME, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="recipe.created")
        response = await client.post(
            "/api/recipes/",
            data={"title": "Pie"},
            files={"image": ("p.png", PNG, "image/png")},
            headers=users.seller(),
        )
        assert response.status_code == 201
        message = await queue.get(timeout=10, fail=False)
        for _ in range(100):
            if message is not None:
                break
            await asyncio.sleep(0.05)
            message = await queue.get(fail=False)
        assert message is not None
        await message.ack()
        envelope = Envelope.model_validate_json(message.body)
        assert envelope.type == "recipe.created" and envelope.producer == "recipes"
        image = envelope.payload["image"]
        fetched = await client.get(image["url"])
        assert (
            hashlib.sha256(fetched.content).hexdigest()
            == image["sha256"]
            == (hashlib.sha256(PNG).hexdigest())
        )
        await asyncio.sleep(0.3)
        assert await queue.get(fail=False) is None  # exactly one


async def test_worker_applies_image_events_twice_and_out_of_order(
    relaying_client: tuple[FastAPI, httpx.AsyncClient],
    users: Users,
    amqp_url: str,
    settings: Settings,
) -> None:
    app, client = relaying_client
    created = await client.post(
        "/api/recipes/",
        data={"title": "Pie"},
        files={"image": ("p.png", PNG, "image/png")},
        headers=users.seller(),
    )
    recipe_id = created.json()["id"]
    await client.patch(
        f"/api/recipes/{recipe_id}/",
        files={"image": ("q.png", PNG, "image/png")},
        headers=users.seller(),
    )

    bus = Bus(amqp_url)
    await bus.connect()
    consumer = service.consumer(settings, app.state.session_maker)
    await consumer.start(bus)
    try:

        def ready(version: int) -> Envelope:
            variant = ImageVariant(
                name="thumb",
                url=f"http://m/{version}.webp",
                width=10,
                height=10,
                format="webp",
                bytes=10,
            )
            event = RecipeImageReady(
                recipe_id=recipe_id,
                image_version=version,
                resized_image_url=f"http://m/{version}.jpg",
                variants=(variant,),
            )
            return make_envelope(event, producer="media")

        newest = ready(2)
        # The newest first, its duplicate (same event id), then the stale version.
        await bus.publish_many([(newest, {}), (newest, {}), (ready(1), {})])
        for _ in range(200):
            if await handled_events(app) == 2:  # the newest and the stale one; not the copy
                break
            await asyncio.sleep(0.05)
        assert await handled_events(app) == 2
        body = (await client.get(f"/api/recipes/{recipe_id}/")).json()
        assert body["image_status"] == "ready"
        assert body["resized_image_url"] == "http://m/2.jpg"
    finally:
        await consumer.stop()
        await bus.close()
