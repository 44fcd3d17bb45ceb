"""``recipes migrate`` declares the worker's queue: events sent before the worker starts wait."""

import asyncio

import httpx
import pytest
from opentelemetry.trace import SpanKind

from contracts import RecipeCreated, RecipeImageReady, UserDeleted
from recipes.main import service
from recipes.settings import Settings
from servicekit._tracing import capture_spans
from servicekit.testing import Vhost, VhostAdmin, assert_queue_topology, routed_keys

pytestmark = pytest.mark.integration

#: A route the test can call without setting anything up first.
TRACED_ROUTE = "/api/recipes/"


async def test_migrate_declares_the_worker_queue_with_its_bindings_and_retries(
    settings: Settings, amqp_url: str, vhost: Vhost, vhost_admin: VhostAdmin
) -> None:
    settings = settings.model_copy(update={"amqp_url": amqp_url})
    # The management API, where migrate sets the queue policies (a container maps it anywhere).
    settings = settings.model_copy(update={"amqp_management_url": vhost_admin.management_url})
    await asyncio.to_thread(service.migrate, settings)

    assert_queue_topology(vhost_admin, vhost, service.queue, settings.retry_policy)
    consumed = service.routing_keys
    assert {UserDeleted.event_type, RecipeImageReady.event_type} <= set(consumed)
    # An event the worker does not consume (the service's own) is not routed to its queue.
    routed = await routed_keys(amqp_url, service.queue, [*consumed, RecipeCreated.event_type])
    assert routed == set(consumed)


async def test_a_request_makes_one_server_span_and_a_probe_none(client: httpx.AsyncClient) -> None:
    spans = capture_spans()
    spans.clear()
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get(TRACED_ROUTE)).status_code == 200
    served = [span.name for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert served == [f"GET {TRACED_ROUTE}"]
