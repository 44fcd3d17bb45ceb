"""``media migrate`` declares the worker's queue: events sent before the worker starts wait."""

import asyncio

import pytest

from contracts import RecipeCreated, RecipeDeleted, UserDeleted
from media.db import create_engine, create_session_maker
from media.main import build_consumer, build_pipeline, migrate
from media.settings import QUEUE_NAME
from servicekit.testing import Vhost, VhostAdmin, assert_queue_topology, routed_keys

from .harness import worker_settings

pytestmark = pytest.mark.integration


async def test_migrate_declares_the_worker_queue_with_its_bindings_and_retries(
    clean_database: str, amqp_url: str, vhost: Vhost, vhost_admin: VhostAdmin
) -> None:
    settings = worker_settings(clean_database, amqp_url)
    # The management API, where migrate sets the queue policies (a container maps it anywhere).
    settings = settings.model_copy(update={"amqp_management_url": vhost_admin.management_url})
    await asyncio.to_thread(migrate, settings)

    assert_queue_topology(vhost_admin, vhost, QUEUE_NAME, settings.retry_policy)
    session_maker = create_session_maker(create_engine(settings.database_url))
    pipeline = build_pipeline(settings, session_maker)
    consumed = build_consumer(settings, session_maker, pipeline).routing_keys
    await pipeline.fetcher.aclose()
    assert {RecipeCreated.event_type, RecipeDeleted.event_type} <= set(consumed)
    # An event the worker does not consume is not routed to its queue.
    routed = await routed_keys(amqp_url, QUEUE_NAME, [*consumed, UserDeleted.event_type])
    assert routed == set(consumed)
