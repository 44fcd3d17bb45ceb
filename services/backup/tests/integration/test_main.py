"""``backup migrate`` declares the worker's queue: events sent before the worker starts wait."""

import asyncio

import pytest

from backup.main import service
from backup.settings import Settings
from contracts import RecipeCreated, ScheduleTick, UserDeleted
from servicekit.testing import Vhost, VhostAdmin, assert_queue_topology, routed_keys

pytestmark = pytest.mark.integration


async def test_migrate_declares_the_worker_queue_with_its_bindings_and_retries(
    clean_database: str, amqp_url: str, vhost: Vhost, vhost_admin: VhostAdmin
) -> None:
    settings = Settings(database_url=clean_database, amqp_url=amqp_url, retry_delays=(0.05, 0.1))
    # The management API, where migrate sets the queue policies (a container maps it anywhere).
    settings = settings.model_copy(update={"amqp_management_url": vhost_admin.management_url})
    await asyncio.to_thread(service.migrate, settings)

    assert_queue_topology(vhost_admin, vhost, service.queue, settings.retry_policy)
    consumed = service.routing_keys
    assert {UserDeleted.event_type, ScheduleTick.event_type} <= set(consumed)
    # An event the worker does not consume is not routed to its queue.
    routed = await routed_keys(amqp_url, service.queue, [*consumed, RecipeCreated.event_type])
    assert routed == set(consumed)
