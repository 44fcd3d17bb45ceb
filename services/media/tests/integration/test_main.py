"""``media migrate`` declares the worker's queue: events sent before the worker starts wait."""

import asyncio

import pytest

from contracts import RecipeCreated, RecipeDeleted, UserDeleted
from media.main import service
from servicekit.testing import Vhost, VhostAdmin, assert_queue_topology, routed_keys

from .harness import worker_settings

pytestmark = pytest.mark.integration


async def test_migrate_declares_the_worker_queue_with_its_bindings_and_retries(
    clean_database: str, amqp_url: str, vhost: Vhost, vhost_admin: VhostAdmin
) -> None:
    settings = worker_settings(clean_database, amqp_url)
    # The management API, where migrate sets the queue policies (a container maps it anywhere).
    settings = settings.model_copy(update={"amqp_management_url": vhost_admin.management_url})
    await asyncio.to_thread(service.migrate, settings)

    assert_queue_topology(vhost_admin, vhost, service.queue, settings.retry_policy)
    consumed = service.routing_keys
    assert {RecipeCreated.event_type, RecipeDeleted.event_type} <= set(consumed)
    # An event the worker does not consume is not routed to its queue.
    routed = await routed_keys(amqp_url, service.queue, [*consumed, UserDeleted.event_type])
    assert routed == set(consumed)
